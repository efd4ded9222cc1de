"""The topic registry: every topic name, and the command routes looked up by type and
by topic.

The routes are declared with their commands (`contracts.commands.COMMAND_ROUTES`) and
the result topics with their events (`contracts.events.EVENT_TOPICS`); this module
gathers the names, so that everything that needs topics imports them from here.

Topic names here are the contract's. A deployment may put a prefix in front of all of
them (`SHOPFLOW_TOPIC_PREFIX`, empty by default) so that test runs or tenants sharing a
broker never see each other's messages; `Topics` applies it.
"""

from dataclasses import dataclass
from typing import Final

from shopflow.contracts.commands import (
    CART_ADD_ITEM,
    CART_REMOVE_ITEM,
    CATALOG_UPSERT_PRODUCT,
    COMMAND_ROUTES,
    ORDERS_PLACE,
    POINTS_CHARGE,
    USERS_REGISTER,
)
from shopflow.contracts.events import (
    CART_EVENTS,
    CATALOG_EVENTS,
    EVENT_TOPICS,
    ORDERS_EVENTS,
    POINTS_EVENTS,
    USERS_EVENTS,
    ResultEvent,
)
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
    "ORDERS_EVENTS",
    "ORDERS_PLACE",
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

DEAD_LETTERS: Final = "shop.dead-letters"

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
