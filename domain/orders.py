"""Placing an order, as the seed orders its checks: the user is valid, the points cover
the total, the stock covers every line, the payment goes through (with retries); only
then do stock, points and the order change, all together."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Protocol

from shopflow.contracts.commands import PlaceOrder
from shopflow.domain import points
from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.errors import EmptyCart, PaymentFailed, Rejected, UnknownProduct, UnknownUser
from shopflow.domain.payment import Payment, PaymentGateway, settle_in_rounds


class Line(Protocol):
    """A line asked for: the contract's `OrderLine` of a command, or a `CartLine`."""

    @property
    def product_id(self) -> int: ...

    @property
    def quantity(self) -> int: ...


@dataclass(frozen=True)
class PricedLine:
    product_id: int
    quantity: int
    unit_price: int
    name: str  # the product's, as ordered

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class PricedOrder:
    lines: tuple[PricedLine, ...]

    @cached_property
    def total(self) -> int:  # asked for by the points check, the payment, the event...
        return sum(line.subtotal for line in self.lines)


def price_order(requested: Sequence[Line], products: Mapping[int, Product]) -> PricedOrder:
    """The lines at today's prices; an unknown product refuses the order."""
    lines = []
    for line in requested:
        product = products.get(line.product_id)
        if product is None:
            raise UnknownProduct(
                f"product {line.product_id} does not exist", product_id=line.product_id
            )
        lines.append(PricedLine(line.product_id, line.quantity, product.price, product.name))
    return PricedOrder(tuple(lines))


@dataclass(frozen=True)
class NewOrder:
    """An order to record: who placed it, by which command, what, and when."""

    user_id: int
    command_id: str
    order: PricedOrder
    placed_at: datetime


@dataclass(frozen=True)
class SettledOrder:
    """What an accepted order changes: the balance after paying, the stock of each product."""

    order: PricedOrder
    balance: int
    products: tuple[Product, ...]


def settle(order: PricedOrder, balance: int, products: Mapping[int, Product]) -> SettledOrder:
    """Check points, then stock, in the seed's order; raise the first rule broken."""
    new_balance = points.spend(balance, order.total)
    taken = tuple(products[line.product_id].take(line.quantity) for line in order.lines)
    return SettledOrder(order, new_balance, taken)


def decide_orders(
    balances: Mapping[int, int],
    carts: Mapping[int, Sequence[CartLine]],
    products: Mapping[int, Product],
    commands: Sequence[PlaceOrder],
    declined: Mapping[str, str],
) -> list[SettledOrder | Rejected]:
    """Each order settled, or why it is refused, in offset order against the state the
    earlier accepted orders left (their points spent, their stock taken, their carts
    emptied). None of the mappings is changed.

    `balances` holds the registered users' balances, `carts` the lines of the users
    ordering from their cart, and `products` every product named.
    `declined` maps the command_id of each order whose payment did not go through (after
    its retries) to why: such an order passes every other check and is then refused
    `payment_failed`, and changes nothing.

    Monotone in `declined`: declining one more order only leaves more points, more stock
    and fuller carts to the orders after it, so an order settled for a set of declines
    is settled, identically, for any larger set. `decide_and_pay_orders` relies on this
    to pay in rounds."""
    balance_of = dict(balances)
    cart_of = {user_id: list(lines) for user_id, lines in carts.items()}
    stock = dict(products)
    decisions: list[SettledOrder | Rejected] = []
    for cmd in commands:
        try:
            balance = balance_of.get(cmd.user_id)
            if balance is None:
                raise UnknownUser(f"user {cmd.user_id} is not registered")
            requested: Sequence[Line]
            if cmd.items is not None:
                requested = cmd.items
            else:
                requested = cart_of.get(cmd.user_id, [])
                if not requested:
                    raise EmptyCart(f"user {cmd.user_id}'s cart is empty")
            settled = settle(price_order(requested, stock), balance, stock)
            if cmd.command_id in declined:
                raise PaymentFailed(declined[cmd.command_id])
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        balance_of[cmd.user_id] = settled.balance
        stock.update({product.product_id: product for product in settled.products})
        if cmd.from_cart:
            cart_of[cmd.user_id] = []
        decisions.append(settled)
    return decisions


async def decide_and_pay_orders(
    balances: Mapping[int, int],
    carts: Mapping[int, Sequence[CartLine]],
    products: Mapping[int, Product],
    commands: Sequence[PlaceOrder],
    gateway: PaymentGateway,
) -> list[SettledOrder | Rejected]:
    """`decide_orders`, with each accepted order paid through `gateway`, in rounds
    (`domain.payment.settle_in_rounds`): if a payment is declined, deciding again with
    that order refused may free points or stock for later orders, which then need
    paying too. `decide_orders` is monotone in the declines, so an order once paid stays
    settled; with a gateway that does not decline there is one round."""
    return await settle_in_rounds(
        commands,
        lambda declined: decide_orders(balances, carts, products, commands, declined),
        lambda cmd, d: Payment(cmd.user_id, d.order.total, cmd.command_id),
        gateway.pay_all,
    )
