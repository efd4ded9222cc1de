"""Commands: what upstream services ask shopflow to do (imperative names).

Every command carries `command_id`, the idempotency key, and is keyed on Kafka by its
entity id: its route (`contracts.topics.COMMAND_ROUTES`) names its topic, that key
field, its result topic and its accepted and rejected events.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from shopflow.contracts.common import (
    CommandId,
    OrderId,
    ProductId,
    Quantity,
    UserId,
    WireModel,
)
from shopflow.contracts.limits import (
    MAX_CHARGE_AMOUNT,
    MAX_NAME_LENGTH,
    MAX_ORDER_ITEMS,
    MAX_PRICE,
    MAX_STOCK_ADDED,
)

# U+0000 is excluded: PostgreSQL text cannot hold it, so such a name could never be stored.
Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[^\x00]+$", examples=["Alice"]),
]


class RegisterUser(WireModel):
    """Create a user with a zero point balance."""

    command_id: CommandId
    user_id: UserId
    name: Name = Field(description="Display name, 1-100 characters.")


class UpsertProduct(WireModel):
    """Create a product, or change its name and price; add `stock_added` units to its stock."""

    command_id: CommandId
    product_id: ProductId
    name: Name = Field(description="Product name, 1-100 characters.")
    price: int = Field(
        ge=1, le=MAX_PRICE, description="Unit price in whole points.", examples=[1500]
    )
    stock_added: int = Field(
        ge=0, le=MAX_STOCK_ADDED, description="Units added to the stock, 0-10^6.", examples=[10]
    )


class ChargePoints(WireModel):
    """Add `amount` points to a user's balance (a balance never exceeds 10^15)."""

    command_id: CommandId
    user_id: UserId
    amount: int = Field(
        ge=1, le=MAX_CHARGE_AMOUNT, description="Points to add, 1-10^9.", examples=[10_000]
    )


class AddCartItem(WireModel):
    """Put `quantity` more units of a product in the user's cart."""

    command_id: CommandId
    user_id: UserId
    product_id: ProductId
    quantity: Quantity


class RemoveCartItem(WireModel):
    """Take `quantity` units of a product out of the user's cart."""

    command_id: CommandId
    user_id: UserId
    product_id: ProductId
    quantity: Quantity


class OrderLine(WireModel):
    """One product and how many units of it."""

    product_id: ProductId
    quantity: Quantity


class PlaceOrder(WireModel):
    """Order explicit `items`, or with `from_cart: true` what the user's cart holds."""

    command_id: CommandId
    user_id: UserId
    items: list[OrderLine] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ORDER_ITEMS,
        description="1-100 lines with distinct product ids. Omit when `from_cart` is true.",
    )
    from_cart: Literal[True] | None = Field(
        default=None, description="Order the cart's contents and empty those cart lines."
    )

    @model_validator(mode="after")
    def _items_xor_cart(self) -> "PlaceOrder":
        if (self.items is None) == (self.from_cart is None):
            raise ValueError("give either `items` or `from_cart: true`, not both or neither")
        if self.items is not None:
            ids = [line.product_id for line in self.items]
            if len(ids) != len(set(ids)):
                raise ValueError("order lines must have distinct product ids")
        return self


class CancelOrder(WireModel):
    """Cancel a placed order: its stock back, its total refunded as points."""

    command_id: CommandId
    user_id: UserId
    order_id: OrderId


class ShipOrder(WireModel):
    """Mark a placed order shipped (sent by fulfilment); it can no longer be cancelled."""

    command_id: CommandId
    user_id: UserId
    order_id: OrderId


Command = (
    RegisterUser
    | UpsertProduct
    | ChargePoints
    | AddCartItem
    | RemoveCartItem
    | PlaceOrder
    | CancelOrder
    | ShipOrder
)
