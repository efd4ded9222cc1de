"""The topic registry, declared once: every topic's name, and each command topic's route
(its command type, key field, result topic, accepted and rejected events, and writer).
Everything else is derived from it: the event topics, the lookups by type and by topic,
what a rejection is, the ACLs (`contracts.access`), the subscribers, topic creation,
the AsyncAPI document, the client's keying and the CLI's typed senders.

Adding a command touches the contract (its model in `contracts.commands`, its events in
`contracts.events`, its route here), its domain rule (`domain/`), its handler and binding
(`consumers.handlers`) and, if it needs rows of its own, its repository (`persistence/`,
`consumers.ports`) and a migration. `consumers.handlers` refuses to import while a route
has no binding.

Topic names here are the contract's. A deployment may put a prefix in front of all of
them (`SHOPFLOW_TOPIC_PREFIX`, empty by default) so that test runs or tenants sharing a
broker never see each other's messages; `Topics` applies it.
"""

from dataclasses import dataclass
from typing import Final

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
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
    PointsCharged,
    PointsChargeRejected,
    ProductRejected,
    ProductUpserted,
    ResultEvent,
    UserRegistered,
    UserRejected,
)
from shopflow.contracts.principals import ACCOUNTS, CATALOG, FULFILMENT, PAYMENTS, STOREFRONT
from shopflow.contracts.routes import CommandRoute

__all__ = [
    "CART_ADD_ITEM",
    "CART_EVENTS",
    "CART_REMOVE_ITEM",
    "CATALOG_EVENTS",
    "CATALOG_UPSERT_PRODUCT",
    "COMMAND_ROUTES",
    "DEAD_LETTERS",
    "EVENT_TOPICS",
    "ORDERS_CANCEL",
    "ORDERS_EVENTS",
    "ORDERS_PLACE",
    "ORDERS_SHIP",
    "POINTS_CHARGE",
    "POINTS_EVENTS",
    "REJECTION_TYPES",
    "ROUTES_BY_TOPIC",
    "ROUTES_BY_TYPE",
    "USERS_EVENTS",
    "USERS_REGISTER",
    "CommandRoute",
    "Topics",
    "is_rejection",
]

# Command topics: one per command type.
USERS_REGISTER: Final = "shop.users.register"
CATALOG_UPSERT_PRODUCT: Final = "shop.catalog.upsert-product"
POINTS_CHARGE: Final = "shop.points.charge"
CART_ADD_ITEM: Final = "shop.cart.add-item"
CART_REMOVE_ITEM: Final = "shop.cart.remove-item"
ORDERS_PLACE: Final = "shop.orders.place"
ORDERS_CANCEL: Final = "shop.orders.cancel"
ORDERS_SHIP: Final = "shop.orders.ship"
# Result topics: one per entity, the results of its commands.
USERS_EVENTS: Final = "shop.users.events"
CATALOG_EVENTS: Final = "shop.catalog.events"
POINTS_EVENTS: Final = "shop.points.events"
CART_EVENTS: Final = "shop.cart.events"
ORDERS_EVENTS: Final = "shop.orders.events"
# What could not be decoded or processed, with the reason.
DEAD_LETTERS: Final = "shop.dead-letters"

COMMAND_ROUTES: Final[tuple[CommandRoute, ...]] = (
    CommandRoute(
        topic=USERS_REGISTER,
        command_type=RegisterUser,
        key_field="user_id",
        result_topic=USERS_EVENTS,
        accepted_type=UserRegistered,
        rejected_type=UserRejected,
        writer=ACCOUNTS,
    ),
    CommandRoute(
        topic=CATALOG_UPSERT_PRODUCT,
        command_type=UpsertProduct,
        key_field="product_id",
        result_topic=CATALOG_EVENTS,
        accepted_type=ProductUpserted,
        rejected_type=ProductRejected,
        writer=CATALOG,
    ),
    CommandRoute(
        topic=POINTS_CHARGE,
        command_type=ChargePoints,
        key_field="user_id",
        result_topic=POINTS_EVENTS,
        accepted_type=PointsCharged,
        rejected_type=PointsChargeRejected,
        writer=PAYMENTS,
        over_http=True,
    ),
    CommandRoute(
        topic=CART_ADD_ITEM,
        command_type=AddCartItem,
        key_field="user_id",
        result_topic=CART_EVENTS,
        accepted_type=CartItemAdded,
        rejected_type=CartItemRejected,
        writer=STOREFRONT,
        over_http=True,
    ),
    CommandRoute(
        topic=CART_REMOVE_ITEM,
        command_type=RemoveCartItem,
        key_field="user_id",
        result_topic=CART_EVENTS,
        accepted_type=CartItemRemoved,
        rejected_type=CartItemRejected,
        writer=STOREFRONT,
        over_http=True,
    ),
    CommandRoute(
        topic=ORDERS_PLACE,
        command_type=PlaceOrder,
        key_field="user_id",
        result_topic=ORDERS_EVENTS,
        accepted_type=OrderPlaced,
        rejected_type=OrderRejected,
        writer=STOREFRONT,
        over_http=True,
    ),
    CommandRoute(
        topic=ORDERS_CANCEL,
        command_type=CancelOrder,
        key_field="user_id",
        result_topic=ORDERS_EVENTS,
        accepted_type=OrderCancelled,
        rejected_type=OrderCancelRejected,
        writer=STOREFRONT,
        over_http=True,
    ),
    CommandRoute(
        topic=ORDERS_SHIP,
        command_type=ShipOrder,
        key_field="user_id",
        result_topic=ORDERS_EVENTS,
        accepted_type=OrderShipped,
        rejected_type=OrderShipRejected,
        writer=FULFILMENT,
    ),
)

# Derived.
EVENT_TOPICS: Final = tuple(dict.fromkeys(route.result_topic for route in COMMAND_ROUTES))
ROUTES_BY_TYPE: Final = {route.command_type: route for route in COMMAND_ROUTES}
ROUTES_BY_TOPIC: Final = {route.topic: route for route in COMMAND_ROUTES}
# The business "no"s: each route's rejected event type (which must carry a `reason`).
REJECTION_TYPES: Final = frozenset(route.rejected_type for route in COMMAND_ROUTES)


def is_rejection(event: ResultEvent) -> bool:
    """Whether `event` is a rejection (its command was refused), by the routes' types."""
    return type(event) in REJECTION_TYPES


@dataclass(frozen=True)
class Topics:
    """Topic names as deployed: the contract's names behind an optional prefix."""

    prefix: str = ""

    def name(self, contract_topic: str) -> str:
        return f"{self.prefix}{contract_topic}"

    @property
    def dead_letters(self) -> str:
        return self.name(DEAD_LETTERS)

    def all(self) -> list[str]:
        contract = [r.topic for r in COMMAND_ROUTES] + list(EVENT_TOPICS) + [DEAD_LETTERS]
        return [self.name(t) for t in contract]
