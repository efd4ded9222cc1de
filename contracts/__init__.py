"""The wire contract of shopflow (CONTRACT.md): every Kafka message, topic and bound.

This package is the service's public API. It imports pydantic only, so upstream and
downstream services can depend on it without pulling in the service's I/O stack.
"""

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
from shopflow.contracts.dead_letters import DeadLetter, DeadLetterReason
from shopflow.contracts.events import (
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderRejected,
    OrderShipped,
    OrderShipRejected,
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
from shopflow.contracts.routes import CommandRoute
from shopflow.contracts.topics import COMMAND_ROUTES, Topics

__all__ = [
    "COMMAND_ROUTES",
    "AddCartItem",
    "CancelOrder",
    "CartItemAdded",
    "CartItemRejected",
    "CartItemRemoved",
    "ChargePoints",
    "Command",
    "CommandRoute",
    "DeadLetter",
    "DeadLetterReason",
    "OrderCancelRejected",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "OrderRejected",
    "OrderShipRejected",
    "OrderShipped",
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
    "ShipOrder",
    "Topics",
    "UpsertProduct",
    "UserRegistered",
    "UserRejected",
]
