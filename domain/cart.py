"""Cart lines: how many units of a product a user means to buy."""

from domain.errors import InsufficientCartQuantity, OutOfStock


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
