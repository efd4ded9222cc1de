"""The stream the chaos driver sends, and what a correct service must make of it.

A shop of its own per run (fresh random ids): rich users (points to spare), poor users
(none), users with a cart filled beforehand (each places one order from it), users who
change their carts, products with plenty of stock, scarce products, and products only
upserted. The setup (registrations, products, points, carts) is applied and answered
before the stream starts.

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

Among the commands: exact duplicates (the same bytes again, right behind the first or
later) and poison records (undecodable, against the contract, or keyed wrongly), each of
which must become one dead letter.
"""

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from shopflow.contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.events import RejectionReason
from shopflow.contracts.topics import ROUTES_BY_TYPE

RICH_BALANCE = 10**9  # one charge of the maximum: covers any rich user's orders here
PLENTY_STOCK = 10**6
CART_LINE_UNITS = 500  # what a cart changer holds of its one product at the start
PRICE_RANGE = (1, 100)


class Expected(StrEnum):
    """What a command must come to, besides a named rejection reason."""

    ACCEPTED = "accepted"
    SCARCE = "accepted-or-out_of_stock"  # an order on scarce stock: the race decides


@dataclass(frozen=True)
class Record:
    """One record to send: a command (`command` set) or poison (`poison` set)."""

    topic: str  # the contract's topic name (no prefix)
    key: bytes
    value: bytes
    command: Command | None = None
    expected: Expected | RejectionReason | None = None
    poison: DeadLetterReason | None = None

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
    plenty: list[int]
    scarce: list[int]
    catalog_only: list[int]  # upserted in the stream, never ordered or put in a cart
    price: dict[int, int]
    stock: dict[int, int]  # at the start of the stream
    cart: dict[int, dict[int, int]]  # user -> product -> units, at the start of the stream
    unknown_user: int
    unknown_product: int

    @property
    def registered(self) -> list[int]:
        return self.rich + self.poor + self.cart_orderers + self.cart_changers


@dataclass
class Workload:
    shop: Shop
    setup: list[list[Record]]  # phases, each answered before the next is sent
    stream: list[Record] = field(default_factory=list)
    more: Callable[[int], None] = lambda count: None  # adds about `count` records

    def extend(self, count: int) -> None:
        """About `count` more records of the same kind at the end of the stream (for a
        fault that needs more time than the stream planned)."""
        self.more(count)

    @property
    def commands(self) -> dict[str, Record]:
        """Every distinct command of the stream, by command_id (the first copy)."""
        found: dict[str, Record] = {}
        for record in self.stream:
            if record.command is not None:
                found.setdefault(record.command_id, record)
        return found

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


def build(
    commands: int, *, run: str, seed: int, duplicates: float = 0.05, poison: float = 0.01
) -> Workload:
    """A shop sized for `commands` stream commands, its setup, and the stream (about
    `commands` records, plus `duplicates` and `poison` shares of them). `seed` decides
    the stream's shape; the ids are fresh on every call (several runs share a database),
    and the command ids start with `run`."""
    rng = random.Random(seed)
    new_id = _Ids(random.Random())
    users = max(20, commands // 25)
    shop = Shop(
        rich=[new_id() for _ in range(users)],
        poor=[new_id() for _ in range(max(2, users // 10))],
        cart_orderers=[new_id() for _ in range(max(4, users // 4))],
        cart_changers=[new_id() for _ in range(max(4, users // 4))],
        plenty=[new_id() for _ in range(12)],
        scarce=[new_id() for _ in range(4)],
        catalog_only=[new_id() for _ in range(4)],
        price={},
        stock={},
        cart={},
        unknown_user=new_id(),
        unknown_product=new_id(),
    )
    for product_id in shop.plenty + shop.scarce + shop.catalog_only:
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
            for p in shop.plenty + shop.scarce + shop.catalog_only
        ],
        [
            command_record(
                ChargePoints(command_id=cid("fund"), user_id=u, amount=RICH_BALANCE), accepted
            )
            for u in shop.rich + shop.cart_orderers
        ]
        + [
            command_record(
                AddCartItem(command_id=cid("fill"), user_id=u, product_id=p, quantity=q), accepted
            )
            for u, lines in shop.cart.items()
            for p, q in lines.items()
        ],
    ]
    workload = Workload(shop, setup)
    stream = _Stream(workload, rng, cid, duplicates, poison)
    stream.fill(commands)
    workload.more = stream.fill
    return workload


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
    ) -> None:
        self.w = workload
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
        goal = sum(1 for r in stream if r.command is not None) + commands
        made = goal - commands
        while made < goal:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            record = next(self._make(kind), None)
            if record is None:
                continue
            stream.append(record)
            made += 1
            if self.rng.random() < self.duplicates:
                # Right behind it (likely in the same batch: concurrent duplicates), or
                # one of the recent commands again.
                recent = [r for r in stream[-200:] if r.command is not None]
                stream.append(record if self.rng.random() < 0.5 else self.rng.choice(recent))
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
