"""The consumer side of the command registry: each contract route (`contracts.topics.
COMMAND_ROUTES`) bound to its handler and the rows it locks.

The contract cannot name handlers (it imports pydantic only), so the binding is made
here, on the consumer side, in one table: `consumers.handlers.BINDINGS`, built by
`bind`, which refuses (at import, so no worker starts) a table in which a route has no
binding or more than one. `Binding[C]` ties the handler and the lock rule to the
command model C, so mypy checks that the handler takes the commands it is bound to.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from shopflow.consumers.locking import LockedRows, LockRule
from shopflow.consumers.ports import UnitOfWork
from shopflow.contracts.common import WireModel
from shopflow.contracts.events import ResultEvent
from shopflow.contracts.topics import COMMAND_ROUTES, ROUTES_BY_TYPE, CommandRoute
from shopflow.domain.errors import Rejected

C = TypeVar("C", bound=WireModel)


@dataclass(frozen=True)
class EventMeta:
    """The envelope of the one result event a command gets."""

    event_id: UUID
    command_id: str
    occurred_at: datetime

    def envelope(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "command_id": self.command_id,
            "occurred_at": self.occurred_at,
        }


# A command's accepted event, all but its envelope: the handler's
# `functools.partial(PointsCharged, user_id=..., ...)`, whose fields mypy checks.
Accepted = Callable[..., ResultEvent]
# Per command: its accepted event, or the rejection the domain decided.
Answer = Accepted | Rejected


@dataclass(frozen=True)
class CommandBatch(Generic[C]):
    """A handler's batch: commands of one type, in offset order, decided at one instant
    (their events' `occurred_at`)."""

    commands: Sequence[C]
    decided_at: datetime


# A handler decides a whole batch of its commands, with the rows its binding locked, and
# answers each command.
Handler = Callable[[UnitOfWork, CommandBatch[C], LockedRows], Awaitable[Sequence[Answer]]]


@dataclass(frozen=True)
class Binding(Generic[C]):
    """A command model's handler and the rows its batches lock."""

    command_type: type[C]
    handler: Handler[C]
    locks: LockRule[C]


def seal(route: CommandRoute, command: WireModel, answer: Answer, meta: EventMeta) -> ResultEvent:
    """The result event of `command`: its answer with the envelope, the one place an
    envelope is attached (a rejection becomes the route's rejected event)."""
    if isinstance(answer, Rejected):
        return route.rejection(
            command, answer.reason, product_id=answer.product_id, **meta.envelope()
        )
    return answer(**meta.envelope())


def bind(*bindings: Binding[Any]) -> Mapping[type[WireModel], Binding[Any]]:
    """The bindings by command type, once each route of the contract has exactly one."""
    by_type: dict[type[WireModel], Binding[Any]] = {}
    for binding in bindings:
        if binding.command_type not in ROUTES_BY_TYPE:
            raise TypeError(f"{binding.command_type.__name__} has no route in the contract")
        if binding.command_type in by_type:
            raise TypeError(f"{binding.command_type.__name__} is bound twice")
        by_type[binding.command_type] = binding
    unbound = [route.type_name for route in COMMAND_ROUTES if route.command_type not in by_type]
    if unbound:
        raise TypeError(f"routes without a handler: {', '.join(unbound)}")
    return by_type
