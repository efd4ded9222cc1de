"""Products: a name, a unit price in points, and units in stock (never negative)."""

from dataclasses import dataclass

from domain.errors import OutOfStock


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


def new_product(product_id: int, name: str, price: int, stock_added: int) -> Product:
    return Product(product_id, name, price, stock_added)
