"""A worker that dies mid-batch loses nothing and applies nothing twice, wherever it
dies: before its database commit (nothing applied; the restarted worker applies it),
after the commit and before publishing (the restarted worker finds the command in the
ledger and publishes the stored result), or after publishing and before committing its
offsets (the restarted worker republishes the same result, same event id). A worker
stopped with SIGTERM mid-stream hands back what it has not finished."""

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import CancelOrder, ChargePoints
from shopflow.contracts.events import OrderCancelled, PointsCharged
from shopflow.contracts.topics import Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.tables import point_balances, processed_commands, users
from shopflow.producers.client import ShopflowClient
from shopflow.settings import FaultInjection, Settings
from shopflow.testing.session import provisioned
from tests.support.database import (
    a_query_waits_on_a_lock,
    balance_of,
    balances_of,
    stock_of,
    transactions_of,
    user_in_database,
)
from tests.support.ids import new_command_id, new_entity_id
from tests.support.seeding import seed_order, seed_product, seed_user
from tests.support.service import isolated
from tests.support.workers import start_worker

PLACED_AT = datetime(2026, 12, 7, 9, tzinfo=UTC)


async def _start_worker(
    settings: Settings, fault: FaultInjection, **overrides: str
) -> asyncio.subprocess.Process:
    """`shopflow worker` in a process of its own; `overrides` are further SHOPFLOW_*
    settings (BATCH_MAX_RECORDS="10" sets SHOPFLOW_BATCH_MAX_RECORDS)."""
    env = {
        "SHOPFLOW_SESSION_TIMEOUT_MS": "6000",
        "SHOPFLOW_FAULT_INJECTION": fault.value,
        **{f"SHOPFLOW_{name}": value for name, value in overrides.items()},
    }
    return await start_worker(settings, env)


async def _wait_exit(process: asyncio.subprocess.Process, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        return await process.wait()


@pytest.fixture
async def own_service_settings(test_settings: Settings) -> Settings:
    """Topics and consumer groups of this test's own, so only its workers consume them."""
    settings = isolated(test_settings, "crash")
    await provisioned(settings)
    return settings


@pytest.mark.parametrize(
    "point",
    [
        FaultInjection.EXIT_BEFORE_DB_COMMIT,
        FaultInjection.EXIT_AFTER_DB_COMMIT,
        FaultInjection.EXIT_AFTER_PUBLISH,
    ],
)
async def test_a_worker_killed_mid_batch_then_restarted_applies_once_and_answers_alike(
    own_service_settings: Settings, engine: AsyncEngine, point: FaultInjection
) -> None:
    user_id = new_entity_id()
    async with engine.begin() as connection:
        await connection.execute(insert(users).values(user_id=user_id, name="Crash"))
        await connection.execute(insert(point_balances).values(user_id=user_id, balance=0))
    command = ChargePoints(command_id=new_command_id("crash"), user_id=user_id, amount=250)

    async with ShopflowClient(
        kafka_connection(own_service_settings, OPS),
        topics=Topics(own_service_settings.topic_prefix),
    ) as client:
        crashing = await _start_worker(own_service_settings, point)
        try:
            await client.send(command)
            exit_code = await _wait_exit(crashing, timeout=60)
        finally:
            if crashing.returncode is None:
                crashing.kill()

        # Died where it was told to: before the commit nothing is applied; after it, the
        # charge is applied; after publishing, its result is out too, but the offset was
        # not committed.
        assert exit_code == 86
        applied = point is not FaultInjection.EXIT_BEFORE_DB_COMMIT
        assert await balance_of(engine, user_id) == (250 if applied else 0)
        assert (command.command_id in await _ledger(engine, [command.command_id])) == applied
        if point is FaultInjection.EXIT_AFTER_PUBLISH:
            await client.wait_for_result(command.command_id, timeout=30)
        else:
            assert client.results(command.command_id) == []

        restarted = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            await client.wait_for_results(
                command.command_id,
                count=2 if point is FaultInjection.EXIT_AFTER_PUBLISH else 1,
                timeout=90,
            )
            await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one
        finally:
            restarted.terminate()
            assert await _wait_exit(restarted, timeout=30) == 0

    # Applied once, and every result (the redelivered batch's replay, after publishing)
    # is the one stored with the command: one outcome, one event id.
    stored = await _ledger(engine, [command.command_id])
    results = client.results(command.command_id)
    assert len(results) == (2 if point is FaultInjection.EXIT_AFTER_PUBLISH else 1)
    for result in results:
        assert isinstance(result, PointsCharged)
        assert result.balance == 250
        assert result.event_id == stored[command.command_id]
    assert await balance_of(engine, user_id) == 250
    assert await transactions_of(engine, user_id) == [("charge", 250, command.command_id)]


@pytest.mark.parametrize(
    "point",
    [
        FaultInjection.EXIT_BEFORE_DB_COMMIT,
        FaultInjection.EXIT_AFTER_DB_COMMIT,
        FaultInjection.EXIT_AFTER_PUBLISH,
    ],
)
async def test_a_cancel_redelivered_after_a_crash_restocks_and_refunds_once(
    own_service_settings: Settings, engine: AsyncEngine, point: FaultInjection
) -> None:
    async with engine.begin() as connection:
        user_id = await seed_user(connection, balance=1_000)
        product_id = await seed_product(connection, price=150, stock=3)
        order_id = await seed_order(connection, user_id, [(product_id, 2, 150)], PLACED_AT)
    command = CancelOrder(command_id=new_command_id("crash"), user_id=user_id, order_id=order_id)

    async with ShopflowClient(
        kafka_connection(own_service_settings, OPS),
        topics=Topics(own_service_settings.topic_prefix),
    ) as client:
        crashing = await _start_worker(own_service_settings, point)
        try:
            await client.send(command)
            assert await _wait_exit(crashing, timeout=60) == 86
        finally:
            if crashing.returncode is None:
                crashing.kill()
        applied = point is not FaultInjection.EXIT_BEFORE_DB_COMMIT
        assert await balance_of(engine, user_id) == (1_000 if applied else 700)
        restarted = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            await client.wait_for_results(
                command.command_id,
                count=2 if point is FaultInjection.EXIT_AFTER_PUBLISH else 1,
                timeout=90,
            )
            await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one
        finally:
            restarted.terminate()
            assert await _wait_exit(restarted, timeout=30) == 0

    stored = await _ledger(engine, [command.command_id])
    for result in client.results(command.command_id):
        assert isinstance(result, OrderCancelled)
        assert (result.refunded, result.balance) == (300, 1_000)
        assert result.event_id == stored[command.command_id]
    assert await balance_of(engine, user_id) == 1_000
    assert await stock_of(engine, product_id) == 3 + 2  # seeded orders leave the stock as it was
    assert [kind for kind, _, _ in await transactions_of(engine, user_id)] == [
        "charge",
        "use",
        "refund",
    ]


async def _ledger(engine: AsyncEngine, command_ids: list[str]) -> dict[str, UUID | None]:
    """command_id -> stored event_id of each of `command_ids` the ledger holds."""
    async with engine.connect() as connection:
        c = processed_commands.c
        rows = await connection.execute(
            select(c.command_id, c.event_id).where(c.command_id.in_(command_ids))
        )
        return {row.command_id: row.event_id for row in rows}


async def _first_answer(client: ShopflowClient, command_ids: list[str], timeout: float) -> None:
    """Return as soon as any of `command_ids` has a result. Not the first command's: the
    worker takes the partitions in no set order, and by the time a given command is
    answered, hundreds of others may have been (measured: up to 560 of 1,000). Polled:
    the client offers no event for "any result", and 5 ms is short next to the stream."""
    async with asyncio.timeout(timeout):
        while all(client.first_seen_at(i) is None for i in command_ids):  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_sigterm_mid_stream_then_restart_applies_every_command_once(
    own_service_settings: Settings, engine: AsyncEngine
) -> None:
    user_ids = [new_entity_id() for _ in range(20)]
    async with engine.begin() as connection:
        await connection.execute(insert(users), [{"user_id": u, "name": "T"} for u in user_ids])
        await connection.execute(
            insert(point_balances), [{"user_id": u, "balance": 0} for u in user_ids]
        )
    commands = [
        ChargePoints(command_id=new_command_id("term"), user_id=user_ids[i % 20], amount=i + 1)
        for i in range(1_000)
    ]
    command_ids = [c.command_id for c in commands]

    async with ShopflowClient(
        kafka_connection(own_service_settings, OPS),
        topics=Topics(own_service_settings.topic_prefix),
    ) as client:
        await asyncio.gather(*(client.send(command) for command in commands))
        # Stopped mid-stream for sure: batches of 10 stretch the stream over 100 batches,
        # and the signal goes out on the first result of any command. With the default
        # 500 and a wait for commands[0], the first worker had answered all 1,000 by the
        # time it stopped (measured, every run); like this it applied 20 to 60.
        first = await _start_worker(
            own_service_settings, FaultInjection.NONE, BATCH_MAX_RECORDS="10"
        )
        try:
            await _first_answer(client, command_ids, timeout=60)
            first.terminate()  # stop while the rest is being consumed
            assert await _wait_exit(first, timeout=60) == 0
        finally:
            if first.returncode is None:
                first.kill()
        # What the first worker applied, from the ledger (its commit is the truth; the
        # results it published may still be on their way to this client).
        applied_by_first = await _ledger(engine, command_ids)
        balances_at_stop = await balances_of(engine, user_ids)
        answered_by_first = {i for i in command_ids if client.results(i)}

        second = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            for command in commands:
                await client.wait_for_result(command.command_id, timeout=90)
        finally:
            second.terminate()
            await _wait_exit(second, timeout=60)

    # The stop came mid-stream: the first worker applied and answered some commands, not
    # all of them; it published no result of a command it had not applied ...
    assert 0 < len(answered_by_first) <= len(applied_by_first) < len(commands)
    assert answered_by_first <= applied_by_first.keys()
    # ... and it left no command half-applied: each balance is the sum of exactly the
    # charges the ledger had recorded for it.
    assert balances_at_stop == {
        u: sum(c.amount for c in commands if c.user_id == u and c.command_id in applied_by_first)
        for u in user_ids
    }
    # Every command has exactly one outcome (any redelivery repeats the stored event id).
    # The stop finishes the offset commits of batches in flight before the consumers
    # close; before it did, it sometimes lost the last one ("Error sending
    # OffsetCommitRequest ... Connection closed") and the second worker got that batch
    # again.
    stored = await _ledger(engine, command_ids)
    assert stored.keys() == set(command_ids)
    for command in commands:
        results = client.results(command.command_id)
        assert {r.event_id for r in results} == {stored[command.command_id]}
        assert isinstance(results[0], PointsCharged)
    # ... and was applied once: each user's ledger holds its 50 charges, each once.
    for index, user_id in enumerate(user_ids):
        expected = sum(i + 1 for i in range(index, 1_000, 20))
        assert await balance_of(engine, user_id) == expected
        assert sorted(await transactions_of(engine, user_id)) == sorted(
            ("charge", c.amount, c.command_id) for c in commands if c.user_id == user_id
        )


async def test_a_batch_outlasting_the_graceful_stop_is_handed_back_not_acknowledged(
    own_service_settings: Settings, engine: AsyncEngine
) -> None:
    # FastStream cancels a handler that outlasts its graceful timeout (0.7.0-0.7.4 then
    # committed the offset anyway). shopflow acknowledges manually, after delivery, so
    # the cancelled batch must come back to the next worker, applied once.
    user_id = await user_in_database(engine)
    command = ChargePoints(command_id=new_command_id("graceful"), user_id=user_id, amount=250)

    async with ShopflowClient(
        kafka_connection(own_service_settings, OPS),
        topics=Topics(own_service_settings.topic_prefix),
    ) as client:
        async with engine.connect() as blocker:
            # Hold the balance row, so the worker's batch waits on it past the stop.
            await blocker.execute(
                select(point_balances.c.balance)
                .where(point_balances.c.user_id == user_id)
                .with_for_update()
            )
            stopping = await _start_worker(
                own_service_settings, FaultInjection.NONE, GRACEFUL_TIMEOUT_S="1"
            )
            try:
                await client.send(command)
                await a_query_waits_on_a_lock(engine, timeout=60)
                stopping.terminate()
                await _wait_exit(stopping, timeout=30)
            finally:
                if stopping.returncode is None:
                    stopping.kill()
            await blocker.rollback()

        assert await balance_of(engine, user_id) == 0
        assert await _ledger(engine, [command.command_id]) == {}
        assert client.results(command.command_id) == []

        restarted = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            result = await client.wait_for_result(command.command_id, timeout=90)
        finally:
            restarted.terminate()
            await _wait_exit(restarted, timeout=30)

    assert isinstance(result, PointsCharged)
    assert result.event_id == (await _ledger(engine, [command.command_id]))[command.command_id]
    assert await balance_of(engine, user_id) == 250
    assert await transactions_of(engine, user_id) == [("charge", 250, command.command_id)]
