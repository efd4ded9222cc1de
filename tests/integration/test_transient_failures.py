"""Transient database failures are retried up to 3 times (the seed's rule); past that
the answer is `temporarily_unavailable` and the command_id is not spent.

Failures are injected by a trigger on point_transactions that raises SQLSTATE 40001
(serialization_failure) for one chosen user, a chosen number of times. The count lives
in a sequence because sequences are not rolled back with the failed savepoint.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged, PointsChargeRejected, RejectionReason
from shopflow.producers.client import ShopflowClient
from tests.support.database import balance_of, ledger_rows, transactions_of
from tests.support.ids import new_command_id
from tests.support.service import registered_user

_INSTALL = [
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


async def _fail_next_inserts(owner_engine: AsyncEngine, user_id: int, failures: int) -> None:
    """Installed as the schema's owner (the service's role may not); the trigger runs as
    its owner too (SECURITY DEFINER), so the service's inserts can read its counters."""
    counter = f"test_fault_{user_id}"
    async with owner_engine.begin() as connection:
        for statement in _INSTALL:
            await connection.execute(text(statement))
        await connection.execute(text(f"CREATE SEQUENCE {counter}"))
        await connection.execute(
            text("INSERT INTO test_injected_faults VALUES (:u, :c, :f)"),
            {"u": user_id, "c": counter, "f": failures},
        )


async def test_charge_failing_three_times_is_retried_and_applied_once(
    client: ShopflowClient, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    await _fail_next_inserts(owner_engine, user_id, failures=3)
    command = ChargePoints(command_id=new_command_id(), user_id=user_id, amount=80)

    event = await client.send_and_wait(command)

    assert isinstance(event, PointsCharged)
    assert await balance_of(engine, user_id) == 80
    assert await transactions_of(engine, user_id) == [("charge", 80, command.command_id)]


async def test_charge_failing_four_times_is_temporarily_unavailable_and_can_be_resent(
    client: ShopflowClient, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    await _fail_next_inserts(owner_engine, user_id, failures=4)
    command = ChargePoints(command_id=new_command_id(), user_id=user_id, amount=80)

    first = await client.send_and_wait(command)

    assert isinstance(first, PointsChargeRejected)
    assert first.reason is RejectionReason.TEMPORARILY_UNAVAILABLE
    assert await balance_of(engine, user_id) == 0
    assert await ledger_rows(engine, command.command_id) == 0  # the key is not spent

    await client.send(command)  # the injected failures are used up now
    results = await client.wait_for_results(command.command_id, count=2)

    assert isinstance(results[1], PointsCharged)
    assert results[1].event_id != first.event_id
    assert await balance_of(engine, user_id) == 80
