"""Commands: what upstream services ask shopflow to do (imperative names), and their
routes.

Every command carries `command_id`, the idempotency key, and is keyed on Kafka by its
entity id: its route (`COMMAND_ROUTES`, at the end) names its topic, that key field,
its result topic and its accepted and rejected events.
"""

from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from shopflow.contracts.common import CommandId, ProductId, Quantity, UserId, WireModel
from shopflow.contracts.events import (
    CART_EVENTS,
    CATALOG_EVENTS,
    ORDERS_EVENTS,
    POINTS_EVENTS,
    USERS_EVENTS,
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    OrderPlaced,
    OrderRejected,
    PointsCharged,
    PointsChargeRejected,
    ProductRejected,
    ProductUpserted,
    UserRegistered,
    UserRejected,
)
from shopflow.contracts.limits import (
    MAX_CHARGE_AMOUNT,
    MAX_NAME_LENGTH,
    MAX_ORDER_ITEMS,
    MAX_PRICE,
    MAX_STOCK_ADDED,
)
from shopflow.contracts.principals import ACCOUNTS, CATALOG, PAYMENTS, STOREFRONT
from shopflow.contracts.routes import CommandRoute

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


Command = RegisterUser | UpsertProduct | ChargePoints | AddCartItem | RemoveCartItem | PlaceOrder

# --- Routes ---------------------------------------------------------------------------
#
# The command registry. Adding a command touches three files:
# - here: its model, a member of `Command`, and its route in `COMMAND_ROUTES` (its topic
#   name included);
# - contracts/events.py: its accepted and rejected events (in `EVENT_TYPES`), and its
#   result topic if it has a new one (in `EVENT_TOPICS`);
# - consumers/handlers.py: its handler and its binding in `BINDINGS` (the handler and
#   the rows it locks); the consumers do not import until every route has one.
# Everything else is made from this list: the subscribers, topic creation, the AsyncAPI
# document (regenerate docs/asyncapi.json), the client's keying and the CLI's typed
# sender (`shopflow <command> --help`). A command that needs new tables also needs its
# migration and repository (persistence/, consumers/ports.py).

USERS_REGISTER: Final = "shop.users.register"
CATALOG_UPSERT_PRODUCT: Final = "shop.catalog.upsert-product"
POINTS_CHARGE: Final = "shop.points.charge"
CART_ADD_ITEM: Final = "shop.cart.add-item"
CART_REMOVE_ITEM: Final = "shop.cart.remove-item"
ORDERS_PLACE: Final = "shop.orders.place"

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
)
