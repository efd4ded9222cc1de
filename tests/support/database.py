"""Reads and writes of the session's PostgreSQL straight through an engine, past the
service: what a test checks after the service has applied its commands, and a user for a
service on topics of its own."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.tables import (
    cart_items,
    dead_letters,
    orders,
    point_balances,
    point_transactions,
    processed_commands,
    products,
    users,
)
from tests.support.ids import new_entity_id


async def balance_of(engine: AsyncEngine, user_id: int) -> int | None:
    async with engine.connect() as connection:
        statement = select(point_balances.c.balance).where(point_balances.c.user_id == user_id)
        return (await connection.execute(statement)).scalar_one_or_none()


async def balances_of(engine: AsyncEngine, user_ids: list[int]) -> dict[int, int]:
    """user id -> balance of each of `user_ids` that has a balance row."""
    async with engine.connect() as connection:
        c = point_balances.c
        rows = await connection.execute(select(c.user_id, c.balance).where(c.user_id.in_(user_ids)))
        return {row.user_id: row.balance for row in rows}


async def transactions_of(engine: AsyncEngine, user_id: int) -> list[tuple[str, int, str]]:
    """(kind, amount, command_id) of every point transaction of the user, oldest first."""
    async with engine.connect() as connection:
        statement = (
            select(
                point_transactions.c.kind,
                point_transactions.c.amount,
                point_transactions.c.command_id,
            )
            .where(point_transactions.c.user_id == user_id)
            .order_by(point_transactions.c.transaction_id)
        )
        return [tuple(row) for row in (await connection.execute(statement)).all()]


async def ledger_rows(engine: AsyncEngine, command_id: str) -> int:
    async with engine.connect() as connection:
        statement = (
            select(func.count())
            .select_from(processed_commands)
            .where(processed_commands.c.command_id == command_id)
        )
        return int((await connection.execute(statement)).scalar_one())


async def stock_of(engine: AsyncEngine, product_id: int) -> int | None:
    async with engine.connect() as connection:
        statement = select(products.c.stock).where(products.c.product_id == product_id)
        return (await connection.execute(statement)).scalar_one_or_none()


async def cart_of(engine: AsyncEngine, user_id: int) -> dict[int, int]:
    async with engine.connect() as connection:
        statement = select(cart_items.c.product_id, cart_items.c.quantity).where(
            cart_items.c.user_id == user_id
        )
        return {row.product_id: row.quantity for row in await connection.execute(statement)}


async def orders_of(engine: AsyncEngine, user_id: int) -> list[tuple[int, int]]:
    """(order id, total) of the user's orders, oldest first."""
    async with engine.connect() as connection:
        statement = (
            select(orders.c.order_id, orders.c.total)
            .where(orders.c.user_id == user_id)
            .order_by(orders.c.order_id)
        )
        return [(row.order_id, row.total) for row in await connection.execute(statement)]


async def user_in_database(engine: AsyncEngine, balance: int = 0) -> int:
    """A user written straight to the database (for services on topics of their own)."""
    user_id = new_entity_id()
    async with engine.begin() as connection:
        await connection.execute(users.insert().values(user_id=user_id, name="Direct"))
        await connection.execute(point_balances.insert().values(user_id=user_id, balance=balance))
    return user_id


async def dead_letter_rows(engine: AsyncEngine, source_topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> reason of every dead letter recorded for `source_topic`."""
    async with engine.connect() as connection:
        c = dead_letters.c
        statement = select(c.partition, c.offset, c.reason).where(c.source_topic == source_topic)
        return {(r.partition, r.offset): r.reason for r in await connection.execute(statement)}


async def a_query_waits_on_a_lock(engine: AsyncEngine, timeout: float) -> None:
    """Return once some query of the database waits on a lock (a batch blocked on a row
    a test holds)."""
    async with asyncio.timeout(timeout):
        while True:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            if waiting:
                return
            await asyncio.sleep(0.1)


_FAULT_TRIGGER = [
    """CREATE TABLE IF NOT EXISTS test_injected_faults (
           user_id bigint PRIMARY KEY, counter text NOT NULL, failures int NOT NULL)""",
    """CREATE OR REPLACE FUNCTION test_inject_fault() RETURNS trigger AS $$
       DECLARE fault record;
       BEGIN
         SELECT counter, failures INTO fault FROM test_injected_faults
          WHERE user_id = NEW.user_id;
         IF FOUND AND nextval(fault.counter) <= fault.failures THEN
           RAISE EXCEPTION 'injected failure' USING ERRCODE = '40001';
         END IF;
         RETURN NEW;
       END $$ LANGUAGE plpgsql SECURITY DEFINER""",
    "DROP TRIGGER IF EXISTS test_inject_fault ON point_transactions",
    """CREATE TRIGGER test_inject_fault BEFORE INSERT ON point_transactions
       FOR EACH ROW EXECUTE FUNCTION test_inject_fault()""",
]
_FAULT_TRIGGER_GONE = [
    "DROP TRIGGER IF EXISTS test_inject_fault ON point_transactions",
    "DROP FUNCTION IF EXISTS test_inject_fault()",
    "DROP TABLE IF EXISTS test_injected_faults",
]


@asynccontextmanager
async def failing_point_inserts(
    owner_engine: AsyncEngine, user_id: int, failures: int
) -> AsyncIterator[None]:
    """Within the block, the next `failures` inserts into point_transactions for
    `user_id` fail with SQLSTATE 40001 (serialization_failure, transient), by a trigger;
    the count lives in a sequence, which the failed savepoint does not roll back.
    Installed as the schema's owner (the service's role may not); the trigger runs as its
    owner too (SECURITY DEFINER), so the service's inserts can read its counters. All of
    it is gone after the block: the schema is the migrations' again (a test compares)."""
    counter = f"test_fault_{user_id}"
    async with owner_engine.begin() as connection:
        for statement in _FAULT_TRIGGER:
            await connection.execute(text(statement))
        await connection.execute(text(f"CREATE SEQUENCE {counter}"))
        await connection.execute(
            text("INSERT INTO test_injected_faults VALUES (:u, :c, :f)"),
            {"u": user_id, "c": counter, "f": failures},
        )
    try:
        yield
    finally:
        async with owner_engine.begin() as connection:
            for statement in _FAULT_TRIGGER_GONE:
                await connection.execute(text(statement))
            await connection.execute(text(f"DROP SEQUENCE {counter}"))
