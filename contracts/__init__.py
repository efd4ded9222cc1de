"""The wire contract of shopflow (CONTRACT.md): every Kafka message, topic and bound.

This package is the service's public API. It imports pydantic only, so upstream and
downstream services can depend on it without pulling in the service's I/O stack.
"""

from contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from contracts.dead_letters import DeadLetter, DeadLetterReason
from contracts.events import (
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    OrderPlaced,
    OrderRejected,
    PlacedOrderLine,
    PointsCharged,
    PointsChargeRejected,
    ProductRejected,
    ProductUpserted,
    RejectionReason,
    ResultEvent,
    UserRegistered,
    UserRejected,
)
from contracts.routes import CommandRoute
from contracts.topics import COMMAND_ROUTES, Topics

__all__ = [
    "COMMAND_ROUTES",
    "AddCartItem",
    "CartItemAdded",
    "CartItemRejected",
    "CartItemRemoved",
    "ChargePoints",
    "Command",
    "CommandRoute",
    "DeadLetter",
    "DeadLetterReason",
    "OrderLine",
    "OrderPlaced",
    "OrderRejected",
    "PlaceOrder",
    "PlacedOrderLine",
    "PointsChargeRejected",
    "PointsCharged",
    "ProductRejected",
    "ProductUpserted",
    "RegisterUser",
    "RejectionReason",
    "RemoveCartItem",
    "ResultEvent",
    "Topics",
    "UpsertProduct",
    "UserRegistered",
    "UserRejected",
]
