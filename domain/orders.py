"""Placing an order, as the seed orders its checks: the user is valid, the points cover
the total, the stock covers every line, the payment goes through (with retries); only
then do stock, points and the order change, all together."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain import points
from domain.catalog import Product
from domain.errors import UnknownProduct


@dataclass(frozen=True)
class PricedLine:
    product_id: int
    quantity: int
    unit_price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class PricedOrder:
    lines: tuple[PricedLine, ...]

    @property
    def total(self) -> int:
        return sum(line.subtotal for line in self.lines)


def price_order(
    requested: Sequence[tuple[int, int]], products: Mapping[int, Product]
) -> PricedOrder:
    """Lines (product id, quantity) at today's prices; an unknown product refuses the order."""
    lines = []
    for product_id, quantity in requested:
        product = products.get(product_id)
        if product is None:
            raise UnknownProduct(f"product {product_id} does not exist", product_id=product_id)
        lines.append(PricedLine(product_id, quantity, product.price))
    return PricedOrder(tuple(lines))


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
