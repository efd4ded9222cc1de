"""The plain-Python model: what the database must hold after the stream, computed from
the setup and the commands' outcomes (each command applied once, in per-key order), and
the check that each outcome is the one the workload called for.

Outcomes come from the results the service published; the model accepts them only where
the workload leaves room (`Expected.SCARCE`: placed or `out_of_stock`), and checks that
room against the stock: stock only falls during the stream, so an order refused
`out_of_stock` asked for more of the product than is left at the end.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from shopflow.contracts.commands import (
    AddCartItem,
    ChargePoints,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from shopflow.contracts.events import OrderPlaced, RejectionReason, ResultEvent
from shopflow.contracts.topics import ROUTES_BY_TYPE
from tests.chaos.workload import RICH_BALANCE, Expected, Workload


@dataclass
class State:
    """The run's rows, as the model expects them or as read from PostgreSQL."""

    users: dict[int, str] = field(default_factory=dict)  # user id -> name
    balances: dict[int, int] = field(default_factory=dict)
    stock: dict[int, int] = field(default_factory=dict)
    carts: dict[int, dict[int, int]] = field(default_factory=dict)  # lines with units > 0
    orders: dict[str, int] = field(default_factory=dict)  # command id -> total


def _rejection_reason(event: ResultEvent) -> RejectionReason | None:
    reason = getattr(event, "reason", None)
    return RejectionReason(reason) if reason is not None else None


def _outcome_problem(expected: Expected | RejectionReason, event: ResultEvent) -> str | None:
    reason = _rejection_reason(event)
    if expected is Expected.ACCEPTED:
        return None if reason is None else f"expected accepted, got {reason}"
    if expected is Expected.SCARCE:
        if reason in (None, RejectionReason.OUT_OF_STOCK):
            return None
        return f"expected placed or out_of_stock, got {reason}"
    return None if reason == expected else f"expected {expected}, got {reason or 'accepted'}"


def expected_state(
    workload: Workload, outcomes: Mapping[str, ResultEvent]
) -> tuple[State, list[str]]:
    """The state the model expects, given each stream command's outcome (by command id),
    and what is wrong with the outcomes themselves."""
    shop = workload.shop
    problems: list[str] = []
    state = State(
        users={u: f"u{u % 997}" for u in shop.registered},
        balances={u: 0 for u in shop.registered},
        stock=dict(shop.stock),
        carts={u: dict(lines) for u, lines in shop.cart.items()},
    )
    for user_id in shop.rich + shop.cart_orderers:
        state.balances[user_id] = RICH_BALANCE

    for command_id, record in workload.commands.items():
        command = record.command
        assert command is not None
        assert record.expected is not None
        event = outcomes.get(command_id)
        if event is None:
            continue  # lost: counted by the driver
        route = ROUTES_BY_TYPE[type(command)]
        if not isinstance(event, route.accepted_type | route.rejected_type):
            problems.append(f"{command_id}: answered {type(event).__name__}")
            continue
        problem = _outcome_problem(record.expected, event)
        if problem is not None:
            problems.append(f"{command_id}: {problem}")
            continue
        if _rejection_reason(event) is not None:
            continue
        match command:
            case RegisterUser():
                state.users[command.user_id] = command.name
                state.balances[command.user_id] = 0
            case UpsertProduct():
                state.stock[command.product_id] += command.stock_added
            case ChargePoints():
                state.balances[command.user_id] += command.amount
            case AddCartItem():
                line = state.carts.setdefault(command.user_id, {})
                line[command.product_id] = line.get(command.product_id, 0) + command.quantity
            case RemoveCartItem():
                state.carts[command.user_id][command.product_id] -= command.quantity
            case PlaceOrder():
                cart = state.carts.get(command.user_id, {})
                lines = (
                    [(line.product_id, line.quantity) for line in command.items]
                    if command.items is not None
                    else list(cart.items())
                )
                total = sum(quantity * shop.price[product] for product, quantity in lines)
                assert isinstance(event, OrderPlaced)
                if event.total != total:
                    problems.append(f"{command_id}: total {event.total}, model {total}")
                for product, quantity in lines:
                    state.stock[product] -= quantity
                state.balances[command.user_id] -= total
                state.orders[command_id] = total
                if command.from_cart:
                    for product, _ in lines:
                        cart[product] = 0
    state.carts = {
        user: {p: q for p, q in lines.items() if q > 0}
        for user, lines in state.carts.items()
        if any(q > 0 for q in lines.values())
    }
    problems += _out_of_stock_borne_out(workload, outcomes, state)
    return state, problems


def _out_of_stock_borne_out(
    workload: Workload, outcomes: Mapping[str, ResultEvent], final: State
) -> list[str]:
    problems = []
    for command_id, record in workload.commands.items():
        event = outcomes.get(command_id)
        if event is None or _rejection_reason(event) is not RejectionReason.OUT_OF_STOCK:
            continue
        assert isinstance(record.command, PlaceOrder)
        assert record.command.items is not None
        product_id = getattr(event, "product_id", None)
        asked = {line.product_id: line.quantity for line in record.command.items}
        if product_id not in asked:
            problems.append(f"{command_id}: out_of_stock names {product_id}, not ordered")
        elif asked[product_id] <= final.stock[product_id]:
            problems.append(
                f"{command_id}: refused out_of_stock for {asked[product_id]} of {product_id}, "
                f"but {final.stock[product_id]} are left"
            )
    return problems


def differences(expected: State, actual: State) -> list[str]:
    """Each way the database differs from the model, one line each."""
    found = []
    for name in ("users", "balances", "stock", "carts", "orders"):
        want: dict[object, object] = getattr(expected, name)
        have: dict[object, object] = getattr(actual, name)
        for key in sorted(want.keys() | have.keys(), key=str):
            if want.get(key) != have.get(key):
                found.append(f"{name}[{key}]: database {have.get(key)}, model {want.get(key)}")
    return found
