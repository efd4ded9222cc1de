"""The idempotency ledger: which command_ids are spent, and the result each one got.

A command_id is spent by the transaction that applies it, in one row written at the end
of that transaction together with its result (`record`): a row always holds a result,
and a command that could not be applied (`temporarily_unavailable`) leaves none. The
primary key settles races between concurrent duplicates: the second transaction's
insert waits for the first, then skips the row, and `record` says which ids were spent
meanwhile, so the applier retries its batch and replays them. Never check-then-insert
without that.

Both statements take the whole batch as arrays (`unnest`), one round trip and one
statement each however large the batch is.

Each id spent is announced on commit (`NOTIFY shopflow_results`, migration 0006's
trigger); an id answered `temporarily_unavailable` spends nothing, so the applier
announces it itself (`announce_unavailable`, `NOTIFY shopflow_unavailable`), and an HTTP
request waiting for it answers 503 rather than wait out its time (shopflow.gateway).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, func, text
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.persistence.tables import processed_commands


@dataclass(frozen=True)
class LedgerEntry:
    """A command_id spent, and the result event it was answered with."""

    command_id: str
    command_type: str
    entity_key: str
    payload_sha256: bytes
    event_id: UUID
    result_topic: str
    result_json: str


# The ids are inserted in sorted order, so two batches spending overlapping ids wait on
# each other in one order and cannot deadlock.
_RECORD = text(
    """
    INSERT INTO processed_commands
        (command_id, command_type, entity_key, payload_sha256, event_id, result_topic,
         result_json)
    SELECT * FROM unnest(
        CAST(:command_ids AS varchar[]), CAST(:command_types AS varchar[]),
        CAST(:entity_keys AS varchar[]), CAST(:payload_sha256s AS bytea[]),
        CAST(:event_ids AS uuid[]), CAST(:result_topics AS varchar[]),
        CAST(:result_jsons AS text[]))
    ORDER BY 1
    ON CONFLICT (command_id) DO NOTHING
    RETURNING command_id
    """
)

# The channels a `shopflow serve` process listens on (persistence.ledger_listener).
SPENT_CHANNEL = "shopflow_results"  # migration 0006's trigger
UNAVAILABLE_CHANNEL = "shopflow_unavailable"
# Ids per notification, as the trigger sends them: 100 of at most 64 characters is well
# under PostgreSQL's 8,000-byte payload.
IDS_PER_NOTIFICATION = 100

_ANNOUNCE_UNAVAILABLE = text(
    f"SELECT pg_notify('{UNAVAILABLE_CHANNEL}', ids) FROM unnest(CAST(:chunks AS text[])) AS ids"
)

_LOAD = text(
    """
    SELECT command_id, command_type, payload_sha256, event_id, result_topic, entity_key, result_json
    FROM processed_commands
    WHERE command_id = ANY(CAST(:command_ids AS varchar[]))
    """
)


class Ledger:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def load(self, command_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries of those ids that are spent."""
        ids = list(command_ids)
        if not ids:
            return {}
        rows = await self._connection.execute(_LOAD, {"command_ids": ids})
        return {
            row.command_id: LedgerEntry(
                command_id=row.command_id,
                command_type=row.command_type,
                entity_key=row.entity_key,
                payload_sha256=bytes(row.payload_sha256),
                event_id=row.event_id,
                result_topic=row.result_topic,
                result_json=row.result_json,
            )
            for row in rows
        }

    async def record(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Spend each entry's id with its result, in one statement; returns the ids spent
        now (any other was spent meanwhile by a concurrent transaction)."""
        if not entries:
            return set()
        result = await self._connection.execute(
            _RECORD,
            {
                "command_ids": [e.command_id for e in entries],
                "command_types": [e.command_type for e in entries],
                "entity_keys": [e.entity_key for e in entries],
                "payload_sha256s": [e.payload_sha256 for e in entries],
                "event_ids": [e.event_id for e in entries],
                "result_topics": [e.result_topic for e in entries],
                "result_jsons": [e.result_json for e in entries],
            },
        )
        return set(result.scalars().all())

    async def announce_unavailable(self, command_ids: Sequence[str]) -> None:
        """Say, on commit, that these ids were answered `temporarily_unavailable`."""
        chunks = [
            " ".join(command_ids[i : i + IDS_PER_NOTIFICATION])
            for i in range(0, len(command_ids), IDS_PER_NOTIFICATION)
        ]
        if chunks:
            await self._connection.execute(_ANNOUNCE_UNAVAILABLE, {"chunks": chunks})

    async def purge_older_than_days(self, days: int) -> int:
        """Forget command_ids older than the retention period; returns how many."""
        statement = delete(processed_commands).where(
            processed_commands.c.created_at < func.now() - func.make_interval(0, 0, 0, days)
        )
        result = await self._connection.execute(statement)
        return int(result.rowcount)
