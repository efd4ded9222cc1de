"""Reading the recorded dead letters back, for operators: which ones, filtered by reason,
source topic and time. Their whole original bytes come from `DeadLetterStore.kept_record`
(one letter at a time, so replaying thousands of large values never holds them all)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.persistence.tables import dead_letters


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters: every condition given must hold (an empty one is no condition).
    `since` is inclusive and `until` exclusive, on `received_at`."""

    ids: Sequence[UUID] = ()
    reasons: Sequence[str] = ()
    source_topics: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.ids or self.reasons or self.source_topics or self.since or self.until)


@dataclass(frozen=True)
class RecordedDeadLetter:
    """A dead letter as recorded: the published letter's fields, with the whole source key.
    `payload_truncated` says whether the published letter carried only a prefix of the
    value; the store has the whole value either way."""

    dead_letter_id: UUID
    reason: str
    error: str
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    payload_size: int
    payload_sha256: str  # hex
    payload_truncated: bool
    received_at: datetime


_c = dead_letters.c
_COLUMNS = (
    _c.dead_letter_id,
    _c.reason,
    _c.error,
    _c.source_topic,
    _c.partition,
    _c.offset,
    _c.key,
    _c.payload_size,
    _c.payload_sha256,
    _c.payload_truncated,
    _c.received_at,
)


def _where(statement: Select[Any], which: DeadLetterFilter) -> Select[Any]:
    if which.ids:
        statement = statement.where(_c.dead_letter_id.in_(list(which.ids)))
    if which.reasons:
        statement = statement.where(_c.reason.in_(list(which.reasons)))
    if which.source_topics:
        statement = statement.where(_c.source_topic.in_(list(which.source_topics)))
    if which.since is not None:
        statement = statement.where(_c.received_at >= which.since)
    if which.until is not None:
        statement = statement.where(_c.received_at < which.until)
    return statement


class DeadLetterReader:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def find(
        self, which: DeadLetterFilter, *, latest: int | None = None
    ) -> list[RecordedDeadLetter]:
        """The matching dead letters, oldest first (by `received_at`, then source topic,
        partition and offset); with `latest`, only that many of the most recent."""
        order = (_c.received_at, _c.source_topic, _c.partition, _c.offset)
        statement = _where(select(*_COLUMNS), which)
        if latest is None:
            rows = list(await self._connection.execute(statement.order_by(*order)))
        else:
            newest_first = statement.order_by(*(column.desc() for column in order)).limit(latest)
            rows = list(await self._connection.execute(newest_first))[::-1]
        return [
            RecordedDeadLetter(
                dead_letter_id=row.dead_letter_id,
                reason=row.reason,
                error=row.error,
                source_topic=row.source_topic,
                partition=row.partition,
                offset=row.offset,
                key=None if row.key is None else bytes(row.key),
                payload_size=row.payload_size,
                payload_sha256=bytes(row.payload_sha256).hex(),
                payload_truncated=row.payload_truncated,
                received_at=row.received_at,
            )
            for row in rows
        ]
