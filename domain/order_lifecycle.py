"""An order after it is placed: `placed`, then `cancelled` or `shipped`, never both and
never back (CONTRACT.md, Commands).

`transition` is the one guard every change of status goes through. Cancelling undoes the
order in one decision: its lines back in stock, its total back to the balance (a refund
never passes the balance ceiling), its payment refunded through the payment port
(`decide_and_refund_cancellations`, in rounds as orders are paid). Shipping only changes
the status.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shopflow.contracts.commands import CancelOrder, ShipOrder
from shopflow.domain import points
from shopflow.domain.catalog import Product
from shopflow.domain.errors import (
    OrderAlreadyCancelled,
    OrderAlreadyShipped,
    PaymentFailed,
    Rejected,
    UnknownOrder,
)
from shopflow.domain.orders import PricedLine
from shopflow.domain.payment import PaymentGateway, Refund, settle_in_rounds


class OrderStatus(StrEnum):
    """Where an order is in its life: placed, then cancelled or shipped, never both."""

    PLACED = "placed"
    CANCELLED = "cancelled"
    SHIPPED = "shipped"


@dataclass(frozen=True)
class StoredOrder:
    """An order as recorded: its lines at the prices and names it was placed with, and
    the reference of the payment that paid it (its PlaceOrder's command_id)."""

    order_id: int
    user_id: int
    status: OrderStatus
    total: int
    placed_at: datetime
    payment_reference: str
    lines: tuple[PricedLine, ...]


# What stopping in each state answers to a command that would move the order on.
_ALREADY = {OrderStatus.CANCELLED: OrderAlreadyCancelled, OrderStatus.SHIPPED: OrderAlreadyShipped}


def transition(order: StoredOrder, to: OrderStatus) -> StoredOrder:
    """`order` moved to `to`; only a placed order moves, and only forward."""
    if to is OrderStatus.PLACED:
        raise ValueError("an order is placed once, by PlaceOrder")
    if order.status is not OrderStatus.PLACED:
        raise _ALREADY[order.status](f"order {order.order_id} is already {order.status}")
    return replace(order, status=to)


def order_of(orders: Mapping[int, StoredOrder], user_id: int, order_id: int) -> StoredOrder:
    """The user's order of that id; another user's order is as unknown as a missing one."""
    order = orders.get(order_id)
    if order is None or order.user_id != user_id:
        raise UnknownOrder(f"user {user_id} has no order {order_id}")
    return order


@dataclass(frozen=True)
class Cancellation:
    """What an accepted cancel changes: the order (now cancelled), the balance after the
    refund, and the stock of each product it returns units to."""

    order: StoredOrder
    balance: int
    products: tuple[Product, ...]


def decide_cancellations(
    balances: Mapping[int, int],
    orders: Mapping[int, StoredOrder],
    products: Mapping[int, Product],
    commands: Sequence[CancelOrder],
    declined: Mapping[str, str],
) -> list[Cancellation | Rejected]:
    """Each cancel decided, or why it is refused, in offset order against the state the
    earlier accepted cancels left (orders cancelled, points refunded, stock returned).
    None of the mappings is changed.

    `balances` holds the balances of the users cancelling, `orders` the orders named
    (whoever's they are), `products` the products of those orders' lines. `declined`
    maps the command_id of each cancel whose refund did not go through (after its
    retries) to why: it is then refused `payment_failed` and changes nothing.

    Monotone in `declined`: one more declined refund leaves its order placed and the
    balance lower, so a cancel accepted for a set of declines is accepted, identically,
    for any larger set (`settle_in_rounds` relies on this)."""
    balance_of = dict(balances)
    order_by_id = dict(orders)
    stock = dict(products)
    decisions: list[Cancellation | Rejected] = []
    for cmd in commands:
        try:
            order = order_of(order_by_id, cmd.user_id, cmd.order_id)
            cancelled = transition(order, OrderStatus.CANCELLED)
            balance = points.credit(balance_of[cmd.user_id], order.total)
            returned = tuple(stock[line.product_id].put_back(line.quantity) for line in order.lines)
            if cmd.command_id in declined:
                raise PaymentFailed(declined[cmd.command_id])
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        balance_of[cmd.user_id] = balance
        order_by_id[order.order_id] = cancelled
        stock.update({product.product_id: product for product in returned})
        decisions.append(Cancellation(cancelled, balance, returned))
    return decisions


async def decide_and_refund_cancellations(
    balances: Mapping[int, int],
    orders: Mapping[int, StoredOrder],
    products: Mapping[int, Product],
    commands: Sequence[CancelOrder],
    gateway: PaymentGateway,
) -> list[Cancellation | Rejected]:
    """`decide_cancellations`, with each accepted cancel's payment refunded through
    `gateway` (in rounds, as orders are paid: `domain.payment.settle_in_rounds`)."""
    return await settle_in_rounds(
        commands,
        lambda declined: decide_cancellations(balances, orders, products, commands, declined),
        lambda cmd, d: Refund(
            cmd.user_id, d.order.total, cmd.command_id, d.order.payment_reference
        ),
        gateway.refund_all,
    )


def decide_shipments(
    orders: Mapping[int, StoredOrder], commands: Sequence[ShipOrder]
) -> list[StoredOrder | Rejected]:
    """Each shipped order, or why it is refused, in offset order (a second ship of one
    order in the batch sees the first). `orders` is not changed."""
    order_by_id = dict(orders)
    decisions: list[StoredOrder | Rejected] = []
    for cmd in commands:
        try:
            shipped = transition(
                order_of(order_by_id, cmd.user_id, cmd.order_id), OrderStatus.SHIPPED
            )
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        order_by_id[shipped.order_id] = shipped
        decisions.append(shipped)
    return decisions
