"""Ceiling: the SQL shopflow issues per batch, sent by bare asyncpg.

    .venv/bin/python -m tests.bench.sql_ceiling --kind charges --commands 10000

The applier runs in this process on batches of 500 decoded commands (no Kafka), on
users (and products) of its own: shopflow's rate with the database alone. Its garbage
collector is tuned as a worker's (`shopflow.cli.processes.tune_garbage_collector`) for
the timed run: untuned, this process's collections of what it holds (20,000 decoded
commands) showed as a fifth of the applier's samples under py-spy (orders, 2026-12-08:
6,035 against 6,769/s tuned). Then, on
another such set, batch by batch: the applier runs the batch in a transaction that is
rolled back, while a SQLAlchemy event hook records each statement and its parameters
as they go to the driver, and bare asyncpg replays them in a transaction that commits,
as shopflow's do (timed); the next batch is recorded on what that replay left. The
books stay as `shopflow check` wants them.
"""

import argparse
import asyncio
import gc
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url

from shopflow.cli.processes import tune_garbage_collector
from shopflow.consumers.applier import BatchApplier
from shopflow.consumers.decoding import DecodedCommand
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.unit_of_work import PgDatabase, PgUnitOfWork
from shopflow.settings import Settings
from tests.bench.drain import _prepare, commands_of
from tests.support.records import decoded_command

BATCH = 500


@dataclass(frozen=True)
class SqlCeiling:
    kind: str
    commands: int
    applier_per_second: float  # shopflow's applier with PostgreSQL, no Kafka
    bare_sql_per_second: float  # the same statements, bare asyncpg
    statements_per_batch: float

    def line(self) -> str:
        return (
            f"{self.kind}: applier alone {self.applier_per_second:,.0f}/s; its SQL by bare "
            f"asyncpg {self.bare_sql_per_second:,.0f}/s ({self.statements_per_batch:.0f} "
            "statements a batch)"
        )


class _RolledBack(PgDatabase):
    """Transactions that roll back when they would commit: the SQL runs, nothing stays."""

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PgUnitOfWork]:
        async with self._engine.connect() as connection:
            transaction = await connection.begin()
            yield PgUnitOfWork(connection)
            await transaction.rollback()


def _decoded(commands: list[Any]) -> list[DecodedCommand]:
    return [decoded_command(command, offset) for offset, command in enumerate(commands)]


async def run(kind: str, count: int, user_count: int = 2_000) -> SqlCeiling:
    settings = Settings()
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )

    async def batches() -> list[list[DecodedCommand]]:
        shop = await _prepare(engine, kind, count, user_count)
        run_id = secrets.token_hex(3)
        decoded = _decoded(commands_of(kind, count, run_id, shop.user_ids, shop.product_ids))
        return [decoded[i : i + BATCH] for i in range(0, count, BATCH)]

    applier = BatchApplier(PgDatabase(engine))
    timed = await batches()
    thresholds = gc.get_threshold()
    tune_garbage_collector(settings)
    try:
        started = time.perf_counter()
        for batch in timed:
            await applier.apply(batch)
        applier_seconds = time.perf_counter() - started
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

    recorded: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        recorded.append((statement, parameters))

    # As the schema's owner: rewinding the order id sequence (setval) is beyond the
    # service's role, and the statements run the same.
    url = make_url(settings.migration_database_url)
    connection = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
    )
    rolled_back = BatchApplier(_RolledBack(engine))
    statements_seen = 0
    bare_seconds = 0.0
    captured = await batches()
    for batch in captured:
        # Each batch is recorded on the state the batches before it left (their replay
        # committed), so the balances and stock it writes are the ones it would write.
        # Sequences do not roll back: the replay is rewound to where the order ids stood,
        # so it inserts order lines under the order ids they were recorded with.
        order_ids_at = await connection.fetchval("SELECT last_value FROM orders_order_id_seq")
        recorded.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        await rolled_back.apply(batch)
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        statements_seen += len(recorded)
        await connection.execute("SELECT setval('orders_order_id_seq', $1)", order_ids_at)
        started = time.perf_counter()
        async with connection.transaction():
            for statement, parameters in recorded:
                if parameters and isinstance(parameters, list):
                    await connection.executemany(statement, parameters)
                else:
                    await connection.fetch(statement, *(parameters or ()))
        bare_seconds += time.perf_counter() - started
    await connection.close()
    await engine.dispose()

    result = SqlCeiling(
        kind=kind,
        commands=count,
        applier_per_second=count / applier_seconds,
        bare_sql_per_second=count / bare_seconds,
        statements_per_batch=statements_seen / len(captured),
    )
    print(result.line(), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", default="charges")
    parser.add_argument("--commands", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.kind, args.commands))


if __name__ == "__main__":
    main()
