"""Products: a name, a unit price in points, and units in stock (never negative)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shopflow.contracts.commands import UpsertProduct
from shopflow.domain.errors import OutOfStock


@dataclass(frozen=True)
class Product:
    product_id: int
    name: str
    price: int
    stock: int

    def restocked(self, name: str, price: int, stock_added: int) -> "Product":
        """This product renamed and repriced, with `stock_added` more units."""
        return Product(self.product_id, name, price, self.stock + stock_added)

    def take(self, quantity: int) -> "Product":
        """This product after `quantity` units left the stock."""
        if quantity > self.stock:
            raise OutOfStock(
                f"product {self.product_id} has {self.stock} units, {quantity} asked",
                product_id=self.product_id,
            )
        return Product(self.product_id, self.name, self.price, self.stock - quantity)

    def put_back(self, quantity: int) -> "Product":
        """This product after `quantity` units came back to the stock (a cancelled order)."""
        return Product(self.product_id, self.name, self.price, self.stock + quantity)


def decide_upserts(
    products: Mapping[int, Product], commands: Sequence[UpsertProduct]
) -> list[Product]:
    """Each product as its upsert leaves it, in offset order: a new one is created with
    `stock_added` units, an existing one renamed, repriced and restocked. An upsert is
    never refused (the contract bounds price and stock_added)."""
    current = dict(products)
    decisions: list[Product] = []
    for cmd in commands:
        existing = current.get(cmd.product_id)
        if existing is None:
            product = Product(cmd.product_id, cmd.name, cmd.price, cmd.stock_added)
        else:
            product = existing.restocked(cmd.name, cmd.price, cmd.stock_added)
        current[cmd.product_id] = product
        decisions.append(product)
    return decisions
