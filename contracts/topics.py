"""The topic registry: each topic with its key and its payload types.

Topic names here are the contract's. A deployment may put a prefix in front of all of
them (`SHOPFLOW_TOPIC_PREFIX`, empty by default) so that test runs or tenants sharing a
broker never see each other's messages; `Topics` applies it.
"""

from dataclasses import dataclass
from typing import Any, Final

from contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from contracts.common import WireModel
from contracts.events import (
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    OrderPlaced,
    OrderRejected,
    PointsCharged,
    PointsChargeRejected,
    ProductRejected,
    ProductUpserted,
    RejectionReason,
    ResultEvent,
    UserRegistered,
    UserRejected,
)

USERS_REGISTER: Final = "shop.users.register"
CATALOG_UPSERT_PRODUCT: Final = "shop.catalog.upsert-product"
POINTS_CHARGE: Final = "shop.points.charge"
CART_ADD_ITEM: Final = "shop.cart.add-item"
CART_REMOVE_ITEM: Final = "shop.cart.remove-item"
ORDERS_PLACE: Final = "shop.orders.place"

USERS_EVENTS: Final = "shop.users.events"
CATALOG_EVENTS: Final = "shop.catalog.events"
POINTS_EVENTS: Final = "shop.points.events"
CART_EVENTS: Final = "shop.cart.events"
ORDERS_EVENTS: Final = "shop.orders.events"

DEAD_LETTERS: Final = "shop.dead-letters"


@dataclass(frozen=True)
class CommandRoute:
    """One command topic: its payload type, the field its Kafka key must equal, and where
    (and as what) its result goes."""

    topic: str
    command_type: type[WireModel]
    key_field: str
    result_topic: str
    accepted_type: type[ResultEvent]
    rejected_type: type[ResultEvent]

    @property
    def type_name(self) -> str:
        return self.command_type.__name__

    def entity_id(self, command: Command) -> int:
        value = getattr(command, self.key_field)
        assert isinstance(value, int)
        return value

    def rejection(
        self,
        command: Command,
        reason: RejectionReason,
        *,
        product_id: int | None = None,
        **envelope: Any,
    ) -> ResultEvent:
        """The rejection event for `command`; `envelope` is event_id, command_id, occurred_at."""
        fields: dict[str, Any] = {self.key_field: self.entity_id(command), "reason": reason}
        if "product_id" in self.rejected_type.model_fields and self.key_field != "product_id":
            named = product_id if product_id is not None else getattr(command, "product_id", None)
            if named is not None:
                fields["product_id"] = named
        return self.rejected_type(**envelope, **fields)


COMMAND_ROUTES: Final[tuple[CommandRoute, ...]] = (
    CommandRoute(
        USERS_REGISTER, RegisterUser, "user_id", USERS_EVENTS, UserRegistered, UserRejected
    ),
    CommandRoute(
        CATALOG_UPSERT_PRODUCT,
        UpsertProduct,
        "product_id",
        CATALOG_EVENTS,
        ProductUpserted,
        ProductRejected,
    ),
    CommandRoute(
        POINTS_CHARGE, ChargePoints, "user_id", POINTS_EVENTS, PointsCharged, PointsChargeRejected
    ),
    CommandRoute(
        CART_ADD_ITEM, AddCartItem, "user_id", CART_EVENTS, CartItemAdded, CartItemRejected
    ),
    CommandRoute(
        CART_REMOVE_ITEM, RemoveCartItem, "user_id", CART_EVENTS, CartItemRemoved, CartItemRejected
    ),
    CommandRoute(ORDERS_PLACE, PlaceOrder, "user_id", ORDERS_EVENTS, OrderPlaced, OrderRejected),
)

ROUTES_BY_TYPE: Final = {route.command_type: route for route in COMMAND_ROUTES}
ROUTES_BY_TOPIC: Final = {route.topic: route for route in COMMAND_ROUTES}
EVENT_TOPICS: Final = (USERS_EVENTS, CATALOG_EVENTS, POINTS_EVENTS, CART_EVENTS, ORDERS_EVENTS)


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
