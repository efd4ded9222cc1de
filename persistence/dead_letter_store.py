"""Dead letters in PostgreSQL: recorded in their batch's transaction, then published
from what was recorded (so a redelivery republishes the same letters, never new ones),
and the whole original record kept for showing or replaying it."""

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.contracts.dead_letters import DeadLetter
from shopflow.persistence.tables import dead_letters


@dataclass(frozen=True)
class DeadLetterEntry:
    """A dead letter as it will be published, and the whole record it stands for."""

    letter: DeadLetter
    source_key: bytes | None
    source_value: bytes | None
    message_key: bytes | None
    message_json: bytes


@dataclass(frozen=True)
class StoredDeadLetter:
    dead_letter_id: UUID
    message_key: bytes | None
    message_json: bytes


@dataclass(frozen=True)
class KeptRecord:
    key: bytes | None
    value: bytes | None


def _row(entry: DeadLetterEntry) -> dict[str, object]:
    letter = entry.letter
    return {
        "dead_letter_id": letter.dead_letter_id,
        "source_topic": letter.source_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "reason": letter.reason.value,
        "error": letter.error,
        "key": entry.source_key,
        "payload": entry.source_value,
        "payload_size": letter.payload_size,
        "payload_sha256": bytes.fromhex(letter.payload_sha256),
        "payload_truncated": letter.payload_truncated,
        "message_key": entry.message_key,
        "message_json": entry.message_json.decode(),
        "received_at": letter.received_at,
    }


class DeadLetterStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def record(self, entries: Sequence[DeadLetterEntry]) -> list[StoredDeadLetter]:
        """Record each letter unless its source record has one already; returns what is
        recorded for each, in the order given (an earlier delivery's letter, if any)."""
        if not entries:
            return []
        # Sorted by id, so that two batches recording the same letters cannot deadlock.
        rows = sorted((_row(e) for e in entries), key=lambda r: str(r["dead_letter_id"]))
        await self._connection.execute(
            pg_insert(dead_letters).on_conflict_do_nothing(
                index_elements=[dead_letters.c.dead_letter_id]
            ),
            rows,
        )
        stored = await self._messages([e.letter.dead_letter_id for e in entries])
        return [stored[e.letter.dead_letter_id] for e in entries]

    async def replace(self, entry: DeadLetterEntry) -> StoredDeadLetter:
        """Record this letter in place of any earlier one for the same source record (a
        record isolated as processing_failed after an earlier letter could not be sent)."""
        row = _row(entry)
        statement = pg_insert(dead_letters).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[dead_letters.c.dead_letter_id],
            set_={
                name: statement.excluded[name]
                for name in ("reason", "error", "payload_truncated", "message_key", "message_json")
            },
        )
        await self._connection.execute(statement)
        return StoredDeadLetter(entry.letter.dead_letter_id, entry.message_key, entry.message_json)

    async def _messages(self, ids: Sequence[UUID]) -> dict[UUID, StoredDeadLetter]:
        c = dead_letters.c
        statement = select(c.dead_letter_id, c.message_key, c.message_json).where(
            c.dead_letter_id.in_(list(ids))
        )
        return {
            row.dead_letter_id: StoredDeadLetter(
                row.dead_letter_id,
                None if row.message_key is None else bytes(row.message_key),
                row.message_json.encode(),
            )
            for row in await self._connection.execute(statement)
        }

    async def kept_record(self, dead_letter_id: UUID) -> KeptRecord | None:
        """The whole original key and value of a dead letter's source record."""
        c = dead_letters.c
        row = (
            await self._connection.execute(
                select(c.key, c.payload).where(c.dead_letter_id == dead_letter_id)
            )
        ).one_or_none()
        if row is None:
            return None
        return KeptRecord(
            None if row.key is None else bytes(row.key),
            None if row.payload is None else bytes(row.payload),
        )
