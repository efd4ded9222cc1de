"""The idempotency ledger: which command_ids are spent, and the result each one got.

Claims are `INSERT ... ON CONFLICT DO NOTHING RETURNING` for the whole batch in one
statement, inside the batch's transaction: the primary key settles races between
concurrent duplicates (a second claimer waits for the first transaction, then finds
the row), never a check-then-insert.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import processed_commands


@dataclass(frozen=True)
class Claim:
    command_id: str
    command_type: str
    entity_key: str
    payload_sha256: bytes


@dataclass(frozen=True)
class StoredResult:
    command_id: str
    command_type: str
    payload_sha256: bytes
    event_id: UUID | None
    result_topic: str | None
    entity_key: str
    result_json: str | None


@dataclass(frozen=True)
class ResultRecord:
    command_id: str
    event_id: UUID
    result_topic: str
    result_json: str


class Ledger:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def claim(self, claims: Sequence[Claim]) -> set[str]:
        """Claim each command_id; returns those claimed now (the others were spent before)."""
        if not claims:
            return set()
        # A fixed order (by id) so that two batches claiming overlapping ids cannot deadlock.
        rows = [
            {
                "command_id": c.command_id,
                "command_type": c.command_type,
                "entity_key": c.entity_key,
                "payload_sha256": c.payload_sha256,
            }
            for c in sorted(claims, key=lambda c: c.command_id)
        ]
        # executemany form: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues")
        # from one cached compiled statement; a literal .values(rows) would be compiled
        # anew for every batch size, which profiling showed costing a fifth of the CPU.
        statement = (
            pg_insert(processed_commands)
            .on_conflict_do_nothing(index_elements=[processed_commands.c.command_id])
            .returning(processed_commands.c.command_id)
        )
        result = await self._connection.execute(statement, rows)
        return set(result.scalars().all())

    async def load(self, command_ids: Iterable[str]) -> dict[str, StoredResult]:
        ids = list(command_ids)
        if not ids:
            return {}
        c = processed_commands.c
        statement = select(
            c.command_id,
            c.command_type,
            c.payload_sha256,
            c.event_id,
            c.result_topic,
            c.entity_key,
            c.result_json,
        ).where(c.command_id.in_(ids))
        rows = (await self._connection.execute(statement)).all()
        return {
            row.command_id: StoredResult(
                command_id=row.command_id,
                command_type=row.command_type,
                payload_sha256=bytes(row.payload_sha256),
                event_id=row.event_id,
                result_topic=row.result_topic,
                entity_key=row.entity_key,
                result_json=row.result_json,
            )
            for row in rows
        }

    async def record(self, results: Sequence[ResultRecord]) -> None:
        """Store each claimed command's result event (one executemany statement)."""
        if not results:
            return
        c = processed_commands.c
        statement = (
            update(processed_commands)
            .where(c.command_id == bindparam("b_command_id"))
            .values(
                event_id=bindparam("b_event_id"),
                result_topic=bindparam("b_result_topic"),
                result_json=bindparam("b_result_json"),
            )
        )
        await self._connection.execute(
            statement,
            [
                {
                    "b_command_id": r.command_id,
                    "b_event_id": r.event_id,
                    "b_result_topic": r.result_topic,
                    "b_result_json": r.result_json,
                }
                for r in results
            ],
        )

    async def release(self, command_ids: Sequence[str]) -> None:
        """Give back claims whose command could not be applied: the id is not spent."""
        if command_ids:
            await self._connection.execute(
                delete(processed_commands).where(
                    processed_commands.c.command_id.in_(list(command_ids))
                )
            )

    async def purge_older_than_days(self, days: int) -> int:
        """Forget command_ids older than the retention period; returns how many."""
        statement = delete(processed_commands).where(
            processed_commands.c.created_at < func.now() - func.make_interval(0, 0, 0, days)
        )
        result = await self._connection.execute(statement)
        return int(result.rowcount)
