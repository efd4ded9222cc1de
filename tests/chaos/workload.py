"""The stream the chaos driver sends, and what a correct service must make of it.

A shop of its own per run (fresh random ids): rich users (points to spare), poor users
(none), users with a cart filled beforehand (each places one order from it), users who
change their carts, order holders (whose orders the stream cancels and ships), products
with plenty of stock, scarce products, contested products (scarce, for the holders'
orders alone), and products only upserted. The setup (registrations, products, points,
carts, the holders' orders, then some of those shipped or cancelled) is applied and
answered phase by phase before the stream starts.

The stream is built so that each command's outcome is decided by the commands of its
own topic and key alone, in their order, as the contract promises (a key's commands on
one topic are applied in offset order): the topics of one user (points, cart, orders)
are consumed independently, so any outcome that depended on how they interleave could
not be predicted. Hence: a rich user's orders never lack points, whatever charges came
first; a poor user gets no charges; a cart changer only removes from a line filled in
the setup, never more than it holds, and never orders from the cart; a cart orderer
gets no cart changes. The one outcome that depends on other keys is stock: orders on
scarce products race, and are either placed or refused `out_of_stock` (`Expected.SCARCE`);
the model takes the outcome from the result and checks that the stock bears it out.

Cancels and ships follow the same rule. A sender learns an order's id from its
`OrderPlaced`, so the orders they move are placed in the setup, by order holders (users
funded in the setup whose only stream commands are cancels and ships: a refund can
change no other outcome); once those are answered, `Workload.settle` makes the setup's
last phase (some of the orders shipped, some cancelled) and weaves the stream's cancels
and ships into the stream. In the stream an order gets cancels or ships, never both (two
topics: their order is not defined), except an order the setup moved: a shipped one gets
a cancel (`order_shipped`), a cancelled one a ship (`order_cancelled`). A second cancel
(or ship) of an order under another command id is `Expected.FIRST_MOVE`: whichever is
applied first moves the order and the other finds it moved (a command answered
`temporarily_unavailable` is sent again later, so their order may change). Some setup
orders race for scarce products of their own (`Shop.contested`); the placed ones are
cancelled in the stream, restocking products no stream order asks for (an
`out_of_stock` is checked against stock that only falls).

Among the commands: exact duplicates (the same bytes again, right behind the first or
later) and poison records (undecodable, against the contract, or keyed wrongly), each of
which must become one dead letter.

A share of the stream's commands that have an HTTP route (`HTTP_SHARE`) is sent over
HTTP (`tests.chaos.over_http`: the record's command is under the id the gateway derives
from its caller and key); a duplicate of one is the same request again, or the command
over Kafka under that id. The setup is sent over Kafka. Nothing above changes: a command
of a key decides its outcome with the same commands whichever way it came.
"""

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.events import OrderPlaced, RejectionReason, ResultEvent
from shopflow.contracts.topics import ROUTES_BY_TYPE
from tests.chaos.over_http import HttpCall, over_http, routed

RICH_BALANCE = 10**9  # one charge of the maximum: covers any rich user's orders here
PLENTY_STOCK = 10**6
CART_LINE_UNITS = 500  # what a cart changer holds of its one product at the start
PRICE_RANGE = (1, 100)
HOLDER_ORDERS = 4  # plain orders (of plenty products) each order holder places in the setup
HTTP_SHARE = 0.1  # of the stream's commands that have an HTTP route, sent over HTTP
HTTP_AGAIN_OVER_KAFKA = 0.5  # of an HTTP command's duplicates, sent over Kafka instead


class Expected(StrEnum):
    """What a command must come to, besides a named rejection reason."""

    ACCEPTED = "accepted"
    SCARCE = "accepted-or-out_of_stock"  # an order on scarce stock: the race decides
    # One of two cancels (or two ships) of one order: the first applied moves it, the
    # other is refused `order_cancelled` (or `order_shipped`); exactly one is accepted.
    FIRST_MOVE = "accepted-or-already-moved"


@dataclass(frozen=True)
class Record:
    """One record to send: a command (`command` set) or poison (`poison` set); over
    HTTP if `http` is set, else over Kafka (`value`, keyed `key`)."""

    topic: str  # the contract's topic name (no prefix)
    key: bytes
    value: bytes
    command: Command | None = None
    expected: Expected | RejectionReason | None = None
    poison: DeadLetterReason | None = None
    http: HttpCall | None = None

    @property
    def command_id(self) -> str:
        assert self.command is not None
        return self.command.command_id


def command_record(command: Command, expected: Expected | RejectionReason) -> Record:
    route = ROUTES_BY_TYPE[type(command)]
    return Record(
        route.topic,
        str(route.entity_id(command)).encode(),
        command.model_dump_json(exclude_none=True).encode(),
        command,
        expected,
    )


@dataclass
class Shop:
    """The run's entities, with what the setup gives them."""

    rich: list[int]  # funded with RICH_BALANCE in the setup
    poor: list[int]
    cart_orderers: list[
        int
    ]  # funded too; each holds a cart line of a plenty product, orders it once
    cart_changers: list[int]  # each holds CART_LINE_UNITS of one plenty product
    # Funded too; each places HOLDER_ORDERS orders of plenty products and one of a
    # contested product in the setup, and sends only cancels and ships in the stream.
    holders: list[int]
    plenty: list[int]
    scarce: list[int]
    contested: list[int]  # the holders' setup race alone: never ordered in the stream
    catalog_only: list[int]  # upserted in the stream, never ordered or put in a cart
    price: dict[int, int]
    stock: dict[int, int]  # as the setup upserts it (before the holders' orders)
    cart: dict[int, dict[int, int]]  # user -> product -> units, at the start of the stream
    unknown_user: int
    unknown_product: int

    @property
    def registered(self) -> list[int]:
        return self.rich + self.poor + self.cart_orderers + self.cart_changers + self.holders

    @property
    def products(self) -> list[int]:
        return self.plenty + self.scarce + self.catalog_only + self.contested


Answers = Mapping[str, ResultEvent]  # outcomes by command id


@dataclass
class Workload:
    shop: Shop
    setup: list[list[Record]]  # phases, each answered before the next is sent
    stream: list[Record] = field(default_factory=list)
    more: Callable[[int], None] = lambda count: None  # adds about `count` records
    # The setup's last phase and the stream's cancels and ships, from the answers.
    settle_with: Callable[[Answers], list[Record]] = lambda answers: []
    settled: bool = False
    _commands: dict[str, Record] = field(default_factory=dict, repr=False)
    _commands_of: tuple[int, int] = (-1, 0)

    def extend(self, count: int) -> None:
        """About `count` more records of the same kind at the end of the stream (for a
        fault that needs more time than the stream planned)."""
        self.more(count)

    def settle(self, answers: Answers) -> list[Record]:
        """Once the setup's phases are answered (`answers`: their outcomes by command
        id), its last phase: ships and cancels of some holders' orders, by the ids their
        `OrderPlaced` gave (added to `setup`, to be sent and answered before the stream).
        The stream's cancels and ships are woven into the stream at the same time."""
        assert not self.settled, "a workload is settled once"
        self.settled = True
        phase = self.settle_with(answers)
        self.setup.append(phase)
        return phase

    @property
    def setup_commands(self) -> list[Record]:
        """Every command of the setup, phase after phase."""
        return [record for phase in self.setup for record in phase]

    @property
    def commands(self) -> dict[str, Record]:
        """Every distinct command of the stream, by command_id (the first copy). Kept
        while the stream is unchanged (its length and last record): the driver asks
        every 100 ms, and a fault's stream grows to tens of thousands."""
        key = (len(self.stream), id(self.stream[-1]) if self.stream else 0)
        if self._commands_of != key:
            found: dict[str, Record] = {}
            for record in self.stream:
                if record.command is not None:
                    found.setdefault(record.command_id, record)
            self._commands, self._commands_of = found, key
        return self._commands

    @property
    def poison(self) -> list[Record]:
        return [r for r in self.stream if r.poison is not None]


class _Ids:
    """Random positive 62-bit ids: no two runs on one database share an entity."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[int] = set()

    def __call__(self) -> int:
        while True:
            candidate = self._rng.randrange(1, 2**62)
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate


class _HttpShare:
    """Which of the stream's commands go over HTTP, and how their duplicates go."""

    def __init__(self, rng: random.Random, share: float) -> None:
        self.rng = rng
        self.share = share

    def choose(self, record: Record) -> Record:
        """`record`, or (a `share` of those with a route) the same command over HTTP."""
        command = record.command
        if command is None or not routed(command) or self.rng.random() >= self.share:
            return record
        derived, call = over_http(command)
        assert record.expected is not None
        return replace(command_record(derived, record.expected), http=call)

    def again(self, record: Record) -> Record:
        """A duplicate of `record`: itself, or for one sent over HTTP, half the time the
        command over Kafka (under its derived id)."""
        if record.http is not None and self.rng.random() < HTTP_AGAIN_OVER_KAFKA:
            return replace(record, http=None)
        return record


def build(
    commands: int,
    *,
    run: str,
    seed: int,
    duplicates: float = 0.05,
    poison: float = 0.01,
    http_share: float = HTTP_SHARE,
) -> Workload:
    """A shop sized for `commands` stream commands, its setup, and the stream (about
    `commands` records, plus `duplicates` and `poison` shares of them; `http_share` of
    those with a route over HTTP). `seed` decides the stream's shape; the ids are fresh
    on every call (several runs share a database), and the command ids start with `run`
    (a command over HTTP: its key)."""
    rng = random.Random(seed)
    new_id = _Ids(random.Random())
    users = max(20, commands // 25)
    shop = Shop(
        rich=[new_id() for _ in range(users)],
        poor=[new_id() for _ in range(max(2, users // 10))],
        cart_orderers=[new_id() for _ in range(max(4, users // 4))],
        cart_changers=[new_id() for _ in range(max(4, users // 4))],
        holders=[new_id() for _ in range(max(4, users // 5))],
        plenty=[new_id() for _ in range(12)],
        scarce=[new_id() for _ in range(4)],
        catalog_only=[new_id() for _ in range(4)],
        contested=[new_id() for _ in range(2)],
        price={},
        stock={},
        cart={},
        unknown_user=new_id(),
        unknown_product=new_id(),
    )
    for product_id in shop.products:
        shop.price[product_id] = rng.randint(*PRICE_RANGE)
    # Scarce: about half of what the stream will ask for (a scarce order asks 1-3 units).
    scarce_orders = int(commands * _WEIGHTS["order_scarce"] / sum(_WEIGHTS.values()))
    scarce_stock = max(3, scarce_orders // len(shop.scarce))
    for product_id in shop.plenty:
        shop.stock[product_id] = PLENTY_STOCK
    for product_id in shop.scarce:
        shop.stock[product_id] = scarce_stock
    for product_id in shop.catalog_only:
        shop.stock[product_id] = 10
    # Contested: each holder asks 1-3 units of one of them, so about half are placed.
    for product_id in shop.contested:
        shop.stock[product_id] = max(3, len(shop.holders) // 2)
    # Cart changers' lines are of the first half of the plenty products; what they add
    # is of the second half (so an add never meets a line a remove works on).
    half = len(shop.plenty) // 2
    for user_id in shop.cart_orderers:
        shop.cart[user_id] = {rng.choice(shop.plenty): rng.randint(1, 3)}
    for user_id in shop.cart_changers:
        shop.cart[user_id] = {rng.choice(shop.plenty[:half]): CART_LINE_UNITS}

    ids = iter(range(10**9))

    def cid(kind: str) -> str:
        return f"{run}-{kind}-{next(ids)}"

    accepted = Expected.ACCEPTED
    setup: list[list[Record]] = [
        [
            command_record(
                RegisterUser(command_id=cid("reg"), user_id=u, name=f"u{u % 997}"), accepted
            )
            for u in shop.registered
        ]
        + [
            command_record(
                UpsertProduct(
                    command_id=cid("product"),
                    product_id=p,
                    name=f"p{p % 997}",
                    price=shop.price[p],
                    stock_added=shop.stock[p],
                ),
                accepted,
            )
            for p in shop.products
        ],
        [
            command_record(
                ChargePoints(command_id=cid("fund"), user_id=u, amount=RICH_BALANCE), accepted
            )
            for u in shop.rich + shop.cart_orderers + shop.holders
        ]
        + [
            command_record(
                AddCartItem(command_id=cid("fill"), user_id=u, product_id=p, quantity=q), accepted
            )
            for u, lines in shop.cart.items()
            for p, q in lines.items()
        ],
    ]
    holders_orders = _holders_orders(shop, rng, cid)
    setup.append(holders_orders)
    workload = Workload(shop, setup)
    # An rng of its own: which commands go over HTTP does not change the stream's shape.
    http = _HttpShare(random.Random(seed + 2), http_share)
    stream = _Stream(workload, rng, cid, duplicates, poison, http)
    stream.fill(commands)
    workload.more = stream.fill
    # An rng of its own: the stream's shape does not depend on when it is settled.
    lifecycle = _Lifecycle(workload, holders_orders, random.Random(seed + 1), cid, http)
    workload.settle_with = lifecycle.settle
    return workload


def _holders_orders(shop: Shop, rng: random.Random, cid: Callable[[str], str]) -> list[Record]:
    """The holders' orders, a setup phase: HOLDER_ORDERS plain ones each, and one racing
    for a contested product (placed or `out_of_stock`, decided by the race)."""
    records = []
    for user in shop.holders:
        for _ in range(HOLDER_ORDERS):
            products = rng.sample(shop.plenty, rng.randint(1, 2))
            lines = [OrderLine(product_id=p, quantity=rng.randint(1, 3)) for p in products]
            records.append(
                command_record(
                    PlaceOrder(command_id=cid("held"), user_id=user, items=lines),
                    Expected.ACCEPTED,
                )
            )
        lines = [OrderLine(product_id=rng.choice(shop.contested), quantity=rng.randint(1, 3))]
        if rng.random() < 0.5:
            lines.append(OrderLine(product_id=rng.choice(shop.plenty), quantity=1))
        records.append(
            command_record(
                PlaceOrder(command_id=cid("contested"), user_id=user, items=lines),
                Expected.SCARCE,
            )
        )
    return records


_WEIGHTS = {
    "charge": 30,
    "add": 12,
    "remove": 10,
    "remove_missing": 2,
    "order_scarce": 15,
    "order_plenty": 8,
    "order_from_cart": 5,
    "order_poor": 3,
    "unknown_user": 2,
    "unknown_product": 2,
    "register_new": 4,
    "register_again": 1,
    "upsert_catalog": 3,
}


class _Stream:
    def __init__(
        self,
        workload: Workload,
        rng: random.Random,
        cid: Callable[[str], str],
        duplicates: float,
        poison: float,
        http: _HttpShare,
    ) -> None:
        self.w = workload
        self.http = http
        self.shop = workload.shop
        self.rng = rng
        self.cid = cid
        self.duplicates = duplicates
        self.poison = poison
        self.removable = {
            u: dict(lines) for u, lines in self.shop.cart.items() if u in self.shop.cart_changers
        }
        self.orderers_left = list(self.shop.cart_orderers)
        self.catalog_names = {p: f"p{p % 997}" for p in self.shop.catalog_only}
        kinds, weights = zip(*_WEIGHTS.items(), strict=True)
        self.kinds = list(kinds)
        self.weights = list(weights)

    def fill(self, commands: int) -> None:
        """`commands` more records that are commands (duplicates included), and poison."""
        stream = self.w.stream
        made = 0  # counted, not the stream's commands recounted: the stream runs long
        while made < commands:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            made_one = next(self._make(kind), None)
            if made_one is None:
                continue
            record = self.http.choose(made_one)
            stream.append(record)
            made += 1
            if self.rng.random() < self.duplicates:
                # Right behind it (likely in the same batch: concurrent duplicates), or
                # one of the recent commands again.
                recent = [r for r in stream[-200:] if r.command is not None]
                again = record if self.rng.random() < 0.5 else self.rng.choice(recent)
                stream.append(self.http.again(again))
                made += 1
            if self.rng.random() < self.poison:
                stream.append(self._poison())

    def _make(self, kind: str) -> Iterator[Record]:
        shop, rng, cid = self.shop, self.rng, self.cid
        half = len(shop.plenty) // 2
        if kind == "charge":
            user = rng.choice(shop.rich + shop.cart_changers)
            yield command_record(
                ChargePoints(command_id=cid("charge"), user_id=user, amount=rng.randint(1, 1000)),
                Expected.ACCEPTED,
            )
        elif kind == "add":
            yield command_record(
                AddCartItem(
                    command_id=cid("add"),
                    user_id=rng.choice(shop.cart_changers),
                    product_id=rng.choice(shop.plenty[half:]),
                    quantity=rng.randint(1, 5),
                ),
                Expected.ACCEPTED,
            )
        elif kind == "remove":
            user = rng.choice(shop.cart_changers)
            ((product, held),) = self.removable[user].items()
            quantity = rng.randint(1, 3)
            if quantity <= held:
                self.removable[user][product] = held - quantity
                yield command_record(
                    RemoveCartItem(
                        command_id=cid("remove"),
                        user_id=user,
                        product_id=product,
                        quantity=quantity,
                    ),
                    Expected.ACCEPTED,
                )
        elif kind == "remove_missing":
            # No cart ever holds a scarce product.
            yield command_record(
                RemoveCartItem(
                    command_id=cid("remove-missing"),
                    user_id=rng.choice(shop.cart_changers),
                    product_id=rng.choice(shop.scarce),
                    quantity=1,
                ),
                RejectionReason.INSUFFICIENT_CART_QUANTITY,
            )
        elif kind == "order_scarce":
            lines = [OrderLine(product_id=rng.choice(shop.scarce), quantity=rng.randint(1, 3))]
            if rng.random() < 0.5:
                lines.append(
                    OrderLine(product_id=rng.choice(shop.plenty), quantity=rng.randint(1, 3))
                )
            yield command_record(
                PlaceOrder(command_id=cid("scarce"), user_id=rng.choice(shop.rich), items=lines),
                Expected.SCARCE,
            )
        elif kind == "order_plenty":
            products = rng.sample(shop.plenty, rng.randint(1, 3))
            yield command_record(
                PlaceOrder(
                    command_id=cid("order"),
                    user_id=rng.choice(shop.rich),
                    items=[OrderLine(product_id=p, quantity=rng.randint(1, 3)) for p in products],
                ),
                Expected.ACCEPTED,
            )
        elif kind == "order_from_cart" and self.orderers_left:
            user = self.orderers_left.pop()
            yield command_record(
                PlaceOrder(command_id=cid("from-cart"), user_id=user, from_cart=True),
                Expected.ACCEPTED,
            )
        elif kind == "order_poor":
            yield command_record(
                PlaceOrder(
                    command_id=cid("poor"),
                    user_id=rng.choice(shop.poor),
                    items=[OrderLine(product_id=rng.choice(shop.plenty), quantity=1)],
                ),
                RejectionReason.INSUFFICIENT_POINTS,
            )
        elif kind == "unknown_user":
            yield command_record(
                ChargePoints(command_id=cid("nobody"), user_id=shop.unknown_user, amount=5),
                RejectionReason.UNKNOWN_USER,
            )
        elif kind == "unknown_product":
            yield command_record(
                PlaceOrder(
                    command_id=cid("no-product"),
                    user_id=rng.choice(shop.rich),
                    items=[OrderLine(product_id=shop.unknown_product, quantity=1)],
                ),
                RejectionReason.UNKNOWN_PRODUCT,
            )
        elif kind == "register_new":
            user = self._new_id()
            yield command_record(
                RegisterUser(command_id=cid("register"), user_id=user, name="newcomer"),
                Expected.ACCEPTED,
            )
        elif kind == "register_again":
            yield command_record(
                RegisterUser(command_id=cid("again"), user_id=rng.choice(shop.rich), name="again"),
                RejectionReason.USER_EXISTS,
            )
        elif kind == "upsert_catalog":
            product = rng.choice(shop.catalog_only)
            yield command_record(
                UpsertProduct(
                    command_id=cid("upsert"),
                    product_id=product,
                    name=self.catalog_names[product],
                    price=shop.price[product],
                    stock_added=rng.randint(0, 10),
                ),
                Expected.ACCEPTED,
            )

    def _new_id(self) -> int:
        return random.randrange(2**62, 2**63 - 1)

    def _poison(self) -> Record:
        """A record that must be dead-lettered, unique in its bytes (a nonce)."""
        nonce = self.cid("poison")
        user = self.rng.choice(self.shop.rich)
        kind = self.rng.choice(["invalid_json", "invalid_message", "key_mismatch"])
        if kind == "invalid_json":
            value = b'{"command_id": "' + nonce.encode() + b'", "user_id": 1,'
            reason = DeadLetterReason.INVALID_JSON
        elif kind == "invalid_message":
            value = json.dumps(
                {"command_id": nonce, "user_id": user, "amount": 5, "amout": 5}
            ).encode()
            reason = DeadLetterReason.INVALID_MESSAGE
        else:
            value = json.dumps({"command_id": nonce, "user_id": user, "amount": 5}).encode()
            reason = DeadLetterReason.KEY_MISMATCH
        key = str(user + 1 if kind == "key_mismatch" else user).encode()
        return Record(ROUTES_BY_TYPE[ChargePoints].topic, key, value, poison=reason)


class Fate(StrEnum):
    """What becomes of a holder's plain order, once placed."""

    CANCEL = "cancelled in the stream"
    SHIP = "shipped in the stream"
    SHIPPED_FIRST = "shipped in the setup, a cancel in the stream"  # -> order_shipped
    CANCELLED_FIRST = "cancelled in the setup, a ship in the stream"  # -> order_cancelled
    KEPT = "kept placed"


_FATE_WEIGHTS = {
    Fate.CANCEL: 35,
    Fate.SHIP: 30,
    Fate.SHIPPED_FIRST: 12,
    Fate.CANCELLED_FIRST: 12,
    Fate.KEPT: 11,
}
SECOND_MOVE = 0.25  # share of an order's stream cancels (ships) with a second, another id
MOVE_DUPLICATE = 0.3  # share of stream cancels and ships sent twice (the same bytes)

# Records sent back to back; a sequence (one order's, or one stray command) is a list of
# them, woven into the stream in its own order.
Group = list[Record]
Move = type[CancelOrder] | type[ShipOrder]


@dataclass(frozen=True)
class _Held:
    """An order the setup placed for a holder."""

    user_id: int
    order_id: int


class _Lifecycle:
    """The holders' cancels and ships, made from the answers to their setup orders."""

    def __init__(
        self,
        workload: Workload,
        orders: list[Record],
        rng: random.Random,
        cid: Callable[[str], str],
        http: _HttpShare,
    ) -> None:
        self.w = workload
        self.orders = orders
        self.rng = rng
        self.cid = cid
        self.http = http

    def settle(self, answers: Answers) -> list[Record]:
        """The setup's moves (returned); the stream's cancels and ships woven into it.
        An order not placed (a contested one refused, or one the model will call wrong)
        is left out."""
        rng = self.rng
        plain: list[_Held] = []
        racing: list[_Held] = []
        for record in self.orders:
            event = answers.get(record.command_id)
            if isinstance(event, OrderPlaced):
                held = _Held(event.user_id, event.order_id)
                (racing if record.expected is Expected.SCARCE else plain).append(held)
        rng.shuffle(plain)
        # One order of each fate first (every variant, even in a small run), then by weight.
        fates = list(Fate) + rng.choices(
            list(_FATE_WEIGHTS), list(_FATE_WEIGHTS.values()), k=max(0, len(plain) - len(Fate))
        )
        setup: list[Record] = []
        sequences: list[list[Group]] = []
        for i, (order, fate) in enumerate(zip(plain, fates, strict=False)):
            first = i < len(Fate)
            if fate is Fate.CANCEL:
                sequences.append(self._moves(CancelOrder, order, every_variant=first))
            elif fate is Fate.SHIP:
                sequences.append(self._moves(ShipOrder, order, every_variant=first))
            elif fate is Fate.SHIPPED_FIRST:
                setup.append(self._record(ShipOrder, order, Expected.ACCEPTED, setup=True))
                sequences.append(
                    [[self._record(CancelOrder, order, RejectionReason.ORDER_SHIPPED)]]
                )
            elif fate is Fate.CANCELLED_FIRST:
                setup.append(self._record(CancelOrder, order, Expected.ACCEPTED, setup=True))
                sequences.append(
                    [[self._record(ShipOrder, order, RejectionReason.ORDER_CANCELLED)]]
                )
        # The racing orders that were placed: cancelled, their contested units restocked.
        sequences += [self._moves(CancelOrder, order, every_variant=False) for order in racing]
        sequences += self._strays(plain + racing)
        _weave(self.w.stream, sequences, rng)
        return setup

    def _moves(self, move: Move, order: _Held, *, every_variant: bool) -> list[Group]:
        """A cancel (or ship) of `order`, sometimes sent twice, sometimes followed by a
        second one under another command id."""
        twice = every_variant or self.rng.random() < SECOND_MOVE
        first = self._record(move, order, Expected.FIRST_MOVE if twice else Expected.ACCEPTED)
        groups = [[first]]
        if every_variant or self.rng.random() < MOVE_DUPLICATE:
            if self.rng.random() < 0.5:
                groups[0].append(self.http.again(first))  # right behind it
            else:
                groups.append([self.http.again(first)])  # later
        if twice:
            groups.append([self._record(move, order, Expected.FIRST_MOVE)])
        return groups

    def _strays(self, orders: list[_Held]) -> list[list[Group]]:
        """One command per holder that names an order it does not have, in turn: a
        cancel of another holder's order, a cancel of an order that does not exist, a ship
        of another holder's order; each `unknown_order`."""
        strays: list[list[Group]] = []
        unknown = RejectionReason.UNKNOWN_ORDER
        for i, user in enumerate(self.w.shop.holders):
            others = [order for order in orders if order.user_id != user]
            if i % 3 == 1 or not others:
                # Order ids are a sequence from 1: none is this large.
                missing = self.rng.randrange(2**62, 2**63 - 1)
                strays.append([[self._command(CancelOrder, user, missing, unknown)]])
                continue
            theirs = self.rng.choice(others).order_id
            move: Move = CancelOrder if i % 3 == 0 else ShipOrder
            strays.append([[self._command(move, user, theirs, unknown)]])
        return strays

    def _record(
        self,
        move: Move,
        order: _Held,
        expected: Expected | RejectionReason,
        *,
        setup: bool = False,
    ) -> Record:
        return self._command(move, order.user_id, order.order_id, expected, setup=setup)

    def _command(
        self,
        move: Move,
        user_id: int,
        order_id: int,
        expected: Expected | RejectionReason,
        *,
        setup: bool = False,
    ) -> Record:
        """The record of a cancel or ship; in the stream, perhaps over HTTP (the setup
        is sent over Kafka)."""
        kind = "cancel" if move is CancelOrder else "ship"
        record = command_record(
            move(command_id=self.cid(kind), user_id=user_id, order_id=order_id), expected
        )
        return record if setup else self.http.choose(record)


def _weave(stream: list[Record], sequences: Sequence[Sequence[Group]], rng: random.Random) -> None:
    """Each sequence's groups put into `stream` (in place) at random points, in the
    sequence's own order; a group's records back to back."""
    spots: list[tuple[float, Group]] = []
    for sequence in sequences:
        at = sorted(rng.random() for _ in sequence)
        spots += zip(at, sequence, strict=True)
    spots.sort(key=lambda spot: spot[0])  # stable: a tie keeps a sequence's order
    woven: list[Record] = []
    size = len(stream)
    j = 0
    for i, record in enumerate(stream):
        while j < len(spots) and spots[j][0] * size <= i:
            woven += spots[j][1]
            j += 1
        woven.append(record)
    for _, group in spots[j:]:
        woven += group
    stream[:] = woven
