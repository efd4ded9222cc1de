"""The plain-Python model: what the database must hold after the stream, computed from
the commands' outcomes (the setup's, phase by phase, then the stream's; each command
applied once, in per-key order), and the check that each outcome is the one the workload
called for.

Outcomes come from the results the service published; the model accepts them only where
the workload leaves room, and checks that room:
- `Expected.SCARCE`: placed or `out_of_stock`. Within a phase (each of the setup's, then
  the stream) a product an order can find short is never restocked (the stream's
  cancels restock plenty products, which never run short, and contested ones, which the
  stream never orders), so an order refused `out_of_stock` asked for more of the product
  than is left at the end of its phase.
- `Expected.FIRST_MOVE`: accepted, or refused as already moved (`order_cancelled` for a
  cancel, `order_shipped` for a ship); of one order's such commands, exactly one is
  accepted. (Which one must be the first by offset is the driver's check: it knows
  where each landed.)
An accepted cancel or ship must find its order placed, by that user, in the model too.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
from shopflow.contracts.events import OrderCancelled, OrderPlaced, RejectionReason, ResultEvent
from shopflow.contracts.topics import ROUTES_BY_TYPE
from shopflow.domain.order_lifecycle import OrderStatus
from tests.chaos.workload import Expected, Record, Workload


@dataclass
class State:
    """The run's rows, as the model expects them or as read from PostgreSQL."""

    users: dict[int, str] = field(default_factory=dict)  # user id -> name
    balances: dict[int, int] = field(default_factory=dict)
    stock: dict[int, int] = field(default_factory=dict)
    carts: dict[int, dict[int, int]] = field(default_factory=dict)  # lines with units > 0
    orders: dict[str, int] = field(default_factory=dict)  # command id -> total
    statuses: dict[int, str] = field(default_factory=dict)  # order id -> status
    # Order id -> the points its `refund` transactions gave back (one, of its total, once
    # cancelled); and -> the amount of the `refunds` rows of its payment (the same).
    refunds: dict[int, int] = field(default_factory=dict)
    refunded_payments: dict[int, int] = field(default_factory=dict)


def _rejection_reason(event: ResultEvent) -> RejectionReason | None:
    reason = getattr(event, "reason", None)
    return RejectionReason(reason) if reason is not None else None


def _outcome_problem(record: Record, event: ResultEvent) -> str | None:
    expected = record.expected
    assert expected is not None
    reason = _rejection_reason(event)
    if expected is Expected.ACCEPTED:
        return None if reason is None else f"expected accepted, got {reason}"
    if expected is Expected.SCARCE:
        if reason in (None, RejectionReason.OUT_OF_STOCK):
            return None
        return f"expected placed or out_of_stock, got {reason}"
    if expected is Expected.FIRST_MOVE:
        # What the one that came second finds: the order moved by the first.
        already = (
            RejectionReason.ORDER_CANCELLED
            if isinstance(record.command, CancelOrder)
            else RejectionReason.ORDER_SHIPPED
        )
        if reason in (None, already):
            return None
        return f"expected accepted or {already}, got {reason}"
    return None if reason == expected else f"expected {expected}, got {reason or 'accepted'}"


@dataclass(frozen=True)
class _Order:
    user_id: int
    lines: tuple[tuple[int, int], ...]  # (product id, units)
    total: int


class _Model:
    """The state, moved by each accepted command."""

    def __init__(self, workload: Workload) -> None:
        self.shop = workload.shop
        self.state = State()
        self.placed: dict[int, _Order] = {}  # by order id
        self.problems: list[str] = []

    def phase(self, records: Sequence[Record], outcomes: Mapping[str, ResultEvent]) -> None:
        """A phase's commands (each at its first copy), then its `out_of_stock` refusals
        checked against the stock at its end."""
        first: dict[str, Record] = {}
        for record in records:
            if record.command is not None:
                first.setdefault(record.command_id, record)
        distinct = list(first.values())
        for record in distinct:
            event = outcomes.get(record.command_id)
            if event is not None:  # else lost: counted by the driver
                self._apply(record, event)
        self.problems += self._out_of_stock_borne_out(distinct, outcomes)

    def _apply(self, record: Record, event: ResultEvent) -> None:
        command = record.command
        assert command is not None
        command_id = command.command_id
        route = ROUTES_BY_TYPE[type(command)]
        if not isinstance(event, route.accepted_type | route.rejected_type):
            self.problems.append(f"{command_id}: answered {type(event).__name__}")
            return
        problem = _outcome_problem(record, event)
        if problem is not None:
            self.problems.append(f"{command_id}: {problem}")
            return
        if _rejection_reason(event) is not None:
            return
        state = self.state
        match command:
            case RegisterUser():
                state.users[command.user_id] = command.name
                state.balances[command.user_id] = 0
            case UpsertProduct():
                stock = state.stock.get(command.product_id, 0)
                state.stock[command.product_id] = stock + command.stock_added
            case ChargePoints():
                state.balances[command.user_id] += command.amount
            case AddCartItem():
                line = state.carts.setdefault(command.user_id, {})
                line[command.product_id] = line.get(command.product_id, 0) + command.quantity
            case RemoveCartItem():
                state.carts[command.user_id][command.product_id] -= command.quantity
            case PlaceOrder():
                assert isinstance(event, OrderPlaced)
                self._place(command, event)
            case CancelOrder():
                assert isinstance(event, OrderCancelled)
                order = self._movable(command, "cancel")
                if order is None:
                    return
                if event.refunded != order.total:
                    self.problems.append(
                        f"{command_id}: refunded {event.refunded}, model {order.total}"
                    )
                state.statuses[command.order_id] = OrderStatus.CANCELLED
                state.balances[command.user_id] += order.total
                for product, quantity in order.lines:
                    state.stock[product] += quantity
                state.refunds[command.order_id] = order.total
                state.refunded_payments[command.order_id] = order.total
            case ShipOrder():
                if self._movable(command, "ship") is not None:
                    state.statuses[command.order_id] = OrderStatus.SHIPPED

    def _place(self, command: PlaceOrder, event: OrderPlaced) -> None:
        state = self.state
        cart = state.carts.get(command.user_id, {})
        lines = (
            [(line.product_id, line.quantity) for line in command.items]
            if command.items is not None
            else list(cart.items())
        )
        total = sum(quantity * self.shop.price[product] for product, quantity in lines)
        if event.total != total:
            self.problems.append(f"{command.command_id}: total {event.total}, model {total}")
        for product, quantity in lines:
            state.stock[product] -= quantity
        state.balances[command.user_id] -= total
        state.orders[command.command_id] = total
        state.statuses[event.order_id] = OrderStatus.PLACED
        self.placed[event.order_id] = _Order(command.user_id, tuple(lines), total)
        if command.from_cart:
            for product, _ in lines:
                cart[product] = 0

    def _movable(self, command: CancelOrder | ShipOrder, what: str) -> _Order | None:
        """The order an accepted cancel or ship moved, if the model has it placed by that
        user; else None, and a problem."""
        order = self.placed.get(command.order_id)
        status = self.state.statuses.get(command.order_id)
        if order is None or order.user_id != command.user_id:
            self.problems.append(
                f"{command.command_id}: accepted a {what} of order {command.order_id}, "
                f"which user {command.user_id} did not place"
            )
            return None
        if status != OrderStatus.PLACED:
            self.problems.append(
                f"{command.command_id}: accepted a {what} of order {command.order_id}, "
                f"already {status}"
            )
            return None
        return order

    def _out_of_stock_borne_out(
        self, records: Sequence[Record], outcomes: Mapping[str, ResultEvent]
    ) -> list[str]:
        problems = []
        stock = self.state.stock
        for record in records:
            event = outcomes.get(record.command_id)
            if event is None or _rejection_reason(event) is not RejectionReason.OUT_OF_STOCK:
                continue
            assert isinstance(record.command, PlaceOrder)
            assert record.command.items is not None
            product_id = getattr(event, "product_id", None)
            asked = {line.product_id: line.quantity for line in record.command.items}
            if product_id not in asked:
                problems.append(
                    f"{record.command_id}: out_of_stock names {product_id}, not ordered"
                )
            elif asked[product_id] <= stock[product_id]:
                problems.append(
                    f"{record.command_id}: refused out_of_stock for {asked[product_id]} of "
                    f"{product_id}, but {stock[product_id]} are left"
                )
        return problems


def _first_moves(workload: Workload, outcomes: Mapping[str, ResultEvent]) -> list[str]:
    """Of each order's `Expected.FIRST_MOVE` commands, one accepted (a second one
    accepted is a problem `_Model._movable` finds; this finds none accepted)."""
    groups: set[tuple[str, int]] = set()  # (command type, order id)
    moved: set[tuple[str, int]] = set()
    unanswered: set[tuple[str, int]] = set()  # lost: counted by the driver
    for command_id, record in workload.commands.items():
        command = record.command
        if record.expected is not Expected.FIRST_MOVE:
            continue
        assert isinstance(command, CancelOrder | ShipOrder)
        group = (type(command).__name__, command.order_id)
        groups.add(group)
        event = outcomes.get(command_id)
        if event is None:
            unanswered.add(group)
        elif _rejection_reason(event) is None:
            moved.add(group)
    return [
        f"order {order_id}: none of its {kind} commands accepted"
        for kind, order_id in sorted(groups - moved - unanswered)
    ]


def expected_state(
    workload: Workload, outcomes: Mapping[str, ResultEvent]
) -> tuple[State, list[str]]:
    """The state the model expects, given each command's outcome (by command id: the
    setup's and the stream's), and what is wrong with the outcomes themselves."""
    model = _Model(workload)
    for phase in workload.setup:
        model.phase(phase, outcomes)
    model.phase(workload.stream, outcomes)
    state = model.state
    state.carts = {
        user: {p: q for p, q in lines.items() if q > 0}
        for user, lines in state.carts.items()
        if any(q > 0 for q in lines.values())
    }
    return state, model.problems + _first_moves(workload, outcomes)


def differences(expected: State, actual: State) -> list[str]:
    """Each way the database differs from the model, one line each."""
    found = []
    for name in (
        "users",
        "balances",
        "stock",
        "carts",
        "orders",
        "statuses",
        "refunds",
        "refunded_payments",
    ):
        want: dict[object, object] = getattr(expected, name)
        have: dict[object, object] = getattr(actual, name)
        for key in sorted(want.keys() | have.keys(), key=str):
            if want.get(key) != have.get(key):
                found.append(f"{name}[{key}]: database {have.get(key)}, model {want.get(key)}")
    return found
