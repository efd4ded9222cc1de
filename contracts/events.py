"""Result events: exactly one per command that is not a dead letter (past-tense names).

A business "no" is an event too (`...Rejected` with a machine-readable `reason`).
`event_id` is the same on every redelivery of a result, so consumers can drop duplicates.
Each command's route (`contracts.topics.COMMAND_ROUTES`) names its result topic and its
accepted and rejected event types. `parse_event` reads any of them by its `type`.
"""

import json
from enum import StrEnum
from typing import Final, Literal
from uuid import UUID

from pydantic import Field

from shopflow.contracts.common import (
    CommandId,
    OrderId,
    ProductId,
    UserId,
    UtcTimestamp,
    WireModel,
)


class RejectionReason(StrEnum):
    UNKNOWN_USER = "unknown_user"
    USER_EXISTS = "user_exists"
    UNKNOWN_PRODUCT = "unknown_product"
    INSUFFICIENT_POINTS = "insufficient_points"
    OUT_OF_STOCK = "out_of_stock"
    INSUFFICIENT_CART_QUANTITY = "insufficient_cart_quantity"
    EMPTY_CART = "empty_cart"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"
    UNKNOWN_ORDER = "unknown_order"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_SHIPPED = "order_shipped"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    PAYMENT_FAILED = "payment_failed"
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"


class ResultEvent(WireModel):
    """Fields every result event carries."""

    event_id: UUID = Field(description="Same on every redelivery of this result.")
    type: str
    command_id: CommandId = Field(description="The command this event answers.")
    occurred_at: UtcTimestamp


class UserRegistered(ResultEvent):
    type: Literal["UserRegistered"] = "UserRegistered"
    user_id: UserId
    name: str


class UserRejected(ResultEvent):
    type: Literal["UserRejected"] = "UserRejected"
    user_id: UserId
    reason: RejectionReason


class ProductUpserted(ResultEvent):
    type: Literal["ProductUpserted"] = "ProductUpserted"
    product_id: ProductId
    name: str
    price: int
    stock: int = Field(description="Units in stock after this command.")


class ProductRejected(ResultEvent):
    type: Literal["ProductRejected"] = "ProductRejected"
    product_id: ProductId
    reason: RejectionReason


class PointsCharged(ResultEvent):
    type: Literal["PointsCharged"] = "PointsCharged"
    user_id: UserId
    amount: int
    balance: int = Field(description="The balance after this charge.")
    transaction_id: int = Field(description="Id of the recorded point transaction.")


class PointsChargeRejected(ResultEvent):
    type: Literal["PointsChargeRejected"] = "PointsChargeRejected"
    user_id: UserId
    reason: RejectionReason


class CartItemAdded(ResultEvent):
    type: Literal["CartItemAdded"] = "CartItemAdded"
    user_id: UserId
    product_id: ProductId
    quantity: int
    cart_quantity: int = Field(description="Units of this product in the cart afterwards.")


class CartItemRemoved(ResultEvent):
    type: Literal["CartItemRemoved"] = "CartItemRemoved"
    user_id: UserId
    product_id: ProductId
    quantity: int
    cart_quantity: int = Field(description="Units of this product in the cart afterwards.")


class CartItemRejected(ResultEvent):
    type: Literal["CartItemRejected"] = "CartItemRejected"
    user_id: UserId
    product_id: ProductId
    reason: RejectionReason


class PlacedOrderLine(WireModel):
    product_id: ProductId
    quantity: int
    unit_price: int


class OrderPlaced(ResultEvent):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    user_id: UserId
    order_id: OrderId
    items: list[PlacedOrderLine]
    total: int
    balance: int = Field(description="The user's balance after paying.")


class OrderRejected(ResultEvent):
    type: Literal["OrderRejected"] = "OrderRejected"
    user_id: UserId
    reason: RejectionReason
    product_id: ProductId | None = Field(
        default=None, description="The product the rejection names, when it names one."
    )


class OrderCancelled(ResultEvent):
    type: Literal["OrderCancelled"] = "OrderCancelled"
    user_id: UserId
    order_id: OrderId
    items: list[PlacedOrderLine] = Field(description="The lines put back in stock.")
    refunded: int = Field(description="Points given back: the order's total.")
    balance: int = Field(description="The user's balance after the refund.")
    placed_at: UtcTimestamp = Field(
        description="When the order was placed (its OrderPlaced's `occurred_at`): the "
        "top-products bucket its units are taken back out of."
    )


class OrderCancelRejected(ResultEvent):
    type: Literal["OrderCancelRejected"] = "OrderCancelRejected"
    user_id: UserId
    order_id: OrderId
    reason: RejectionReason


class OrderShipped(ResultEvent):
    type: Literal["OrderShipped"] = "OrderShipped"
    user_id: UserId
    order_id: OrderId


class OrderShipRejected(ResultEvent):
    type: Literal["OrderShipRejected"] = "OrderShipRejected"
    user_id: UserId
    order_id: OrderId
    reason: RejectionReason


# Every result event, by its `type`: the subclasses of ResultEvent, so that a new event
# is parseable once it is declared.
EVENT_TYPES: Final[dict[str, type[ResultEvent]]] = {
    cls.model_fields["type"].default: cls for cls in ResultEvent.__subclasses__()
}


def parse_event(value: bytes | str) -> ResultEvent:
    """Parse any result event by its `type`."""
    document = json.loads(value)
    type_name = document.get("type") if isinstance(document, dict) else None
    event_type = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if event_type is None:
        raise ValueError(f"not a shopflow result event: {str(value)[:200]}")
    return event_type.model_validate_json(value)
