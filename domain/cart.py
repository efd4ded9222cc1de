"""Cart lines: how many units of a product a user means to buy."""

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from shopflow.contracts.commands import AddCartItem, RemoveCartItem
from shopflow.domain.catalog import Product
from shopflow.domain.errors import (
    InsufficientCartQuantity,
    OutOfStock,
    Rejected,
    UnknownProduct,
    UnknownUser,
)

CartChange = AddCartItem | RemoveCartItem


@dataclass(frozen=True)
class CartLine:
    """One line of a user's cart: units of a product (an order from the cart orders it)."""

    product_id: int
    quantity: int


def add_to_cart(in_cart: int, quantity: int, *, stock: int, product_id: int) -> int:
    """Units in the cart after adding `quantity`; the line may not exceed the stock now."""
    new_quantity = in_cart + quantity
    if new_quantity > stock:
        raise OutOfStock(
            f"product {product_id}: {in_cart} in cart + {quantity} exceeds stock {stock}",
            product_id=product_id,
        )
    return new_quantity


def remove_from_cart(in_cart: int, quantity: int, *, product_id: int) -> int:
    """Units left after removing `quantity`; the cart must hold at least that many."""
    if quantity > in_cart:
        raise InsufficientCartQuantity(
            f"product {product_id}: cart holds {in_cart}, {quantity} to remove",
            product_id=product_id,
        )
    return in_cart - quantity


def decide_cart_changes(
    users: Set[int],
    products: Mapping[int, Product],
    lines: Mapping[tuple[int, int], int],
    commands: Sequence[CartChange],
) -> list[int | Rejected]:
    """The units of the line each change leaves (0: no line), or why it is refused, in
    offset order: the user must be registered (`users`), the product must exist, then the
    cart rule. `lines` maps (user id, product id) to units; it is not changed."""
    current = dict(lines)
    decisions: list[int | Rejected] = []
    for cmd in commands:
        line = (cmd.user_id, cmd.product_id)
        try:
            if cmd.user_id not in users:
                raise UnknownUser(f"user {cmd.user_id} is not registered")
            product = products.get(cmd.product_id)
            if product is None:
                raise UnknownProduct(
                    f"product {cmd.product_id} does not exist", product_id=cmd.product_id
                )
            in_cart = current.get(line, 0)
            if isinstance(cmd, AddCartItem):
                quantity = add_to_cart(
                    in_cart, cmd.quantity, stock=product.stock, product_id=cmd.product_id
                )
            else:
                quantity = remove_from_cart(in_cart, cmd.quantity, product_id=cmd.product_id)
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        current[line] = quantity
        decisions.append(quantity)
    return decisions
