"""A batch through its binding, as the applier runs it: its rows locked, then its handler,
each answer sealed with an envelope (a rejection is left as the domain's `Rejected`, so
that tests read which rule said no)."""

import uuid
from datetime import UTC, datetime
from typing import Any

from shopflow.consumers.bindings import CommandBatch, EventMeta
from shopflow.consumers.handlers import BINDINGS
from shopflow.consumers.locking import lock_rows
from shopflow.consumers.ports import UnitOfWork
from shopflow.contracts.events import ResultEvent
from shopflow.domain.errors import Rejected

DECIDED_AT = datetime(2026, 11, 29, tzinfo=UTC)


async def handled(uow: UnitOfWork, *commands: Any) -> list[ResultEvent | Rejected]:
    """One batch of one command type: per command, its event or its rejection."""
    binding = BINDINGS[type(commands[0])]
    locked = await lock_rows(uow, binding.locks, commands)
    answers = await binding.handler(uow, CommandBatch(commands, DECIDED_AT), locked)
    return [
        a
        if isinstance(a, Rejected)
        else a(**EventMeta(uuid.uuid4(), c.command_id, DECIDED_AT).envelope())
        for c, a in zip(commands, answers, strict=True)
    ]


def names(answers: list[ResultEvent | Rejected]) -> list[str]:
    return [type(a).__name__ for a in answers]
