"""What the HTTP side answers (CONTRACT.md, the HTTP query side and Writing over HTTP):
the read model builds the queries' answers, and FastAPI serializes them and documents
them, and the writes' (answered by `shopflow.gateway`), in the OpenAPI document."""

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

R = TypeVar("R")


class PointsAnswer(BaseModel):
    user_id: int
    balance: int


class ProductAnswer(BaseModel):
    product_id: int
    name: str
    price: int
    stock: int


class CartLineAnswer(BaseModel):
    product_id: int
    name: str
    unit_price: int
    quantity: int


class CartAnswer(BaseModel):
    user_id: int
    items: list[CartLineAnswer]
    total: int


class TopProductAnswer(BaseModel):
    product_id: int
    name: str
    units_sold: int


class TopProductsAnswer(BaseModel):
    window_hours: int
    products: list[TopProductAnswer]


class ErrorAnswer(BaseModel):
    error: str
    detail: Any = None


class RejectionAnswer(BaseModel, Generic[R]):
    """A write answered with a "no" (CONTRACT.md, Writing over HTTP): `result` is the
    command's rejection event, or null when there is none (Kafka could not be reached)."""

    error: str = Field(description="The rejection's `reason`.")
    result: R | None
    detail: str | None = None


class PendingAnswer(BaseModel):
    """A write without a result within its wait (202): `Location: /commands/{command_id}`."""

    command_id: str
    status: Literal["pending"]


class OrderLineAnswer(BaseModel):
    product_id: int
    name: str  # as it was when ordered
    quantity: int
    unit_price: int


class OrderAnswer(BaseModel):
    order_id: int
    user_id: int
    status: str
    placed_at: datetime
    cancelled_at: datetime | None
    shipped_at: datetime | None
    total: int
    items: list[OrderLineAnswer]


class OrdersAnswer(BaseModel):
    user_id: int
    orders: list[OrderAnswer]
    next_before: int | None  # the `before` of the next page; None on the last


class PointTransactionAnswer(BaseModel):
    transaction_id: int
    kind: str
    amount: int  # signed: a use is negative
    balance_after: int
    order_id: int | None  # None for a charge
    command_id: str
    occurred_at: datetime


class StatementAnswer(BaseModel):
    user_id: int
    transactions: list[PointTransactionAnswer]
    next_before: int | None


class CommandAnswer(BaseModel):
    command_id: str
    result: dict[str, Any] = Field(
        description="The command's result event, exactly as it was published (CONTRACT.md, "
        "Result events): the same `event_id` on every answer."
    )
