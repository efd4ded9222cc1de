"""A worker that dies after its database commit, before publishing and before
committing its offsets, loses nothing and applies nothing twice: the restarted worker
gets the command again, finds it in the ledger and publishes the stored result."""

import asyncio
import os
import sys

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.commands import ChargePoints
from contracts.events import PointsCharged
from contracts.topics import Topics
from persistence.tables import point_balances, processed_commands, users
from producers.client import ShopflowClient
from shopflow.kafka_admin import ensure_topics
from shopflow.settings import FaultInjection, Settings
from tests.conftest import new_command_id, new_entity_id
from tests.integration.helpers import balance_of, isolated, transactions_of


async def _start_worker(settings: Settings, fault: FaultInjection) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "SHOPFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SHOPFLOW_DATABASE_URL": settings.database_url,
        "SHOPFLOW_REDIS_URL": settings.redis_url,
        "SHOPFLOW_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "SHOPFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "SHOPFLOW_CONSUMER_GROUP": settings.consumer_group,
        "SHOPFLOW_COMMAND_PARTITIONS": str(settings.command_partitions),
        "SHOPFLOW_EVENT_PARTITIONS": str(settings.event_partitions),
        "SHOPFLOW_DEAD_LETTER_PARTITIONS": str(settings.dead_letter_partitions),
        "SHOPFLOW_SESSION_TIMEOUT_MS": "6000",
        "SHOPFLOW_FAULT_INJECTION": fault.value,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopflow", "worker", "--log-level", "warning", env=env
    )


async def _wait_exit(process: asyncio.subprocess.Process, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        return await process.wait()


@pytest.fixture
async def own_service_settings(test_settings: Settings) -> Settings:
    """Topics and consumer groups of this test's own, so only its workers consume them."""
    settings = isolated(test_settings, "crash")
    await ensure_topics(settings)
    return settings


async def test_crash_after_db_commit_then_restart_applies_once_and_publishes_the_result(
    own_service_settings: Settings, engine: AsyncEngine
) -> None:
    user_id = new_entity_id()
    async with engine.begin() as connection:
        await connection.execute(insert(users).values(user_id=user_id, name="Crash"))
        await connection.execute(insert(point_balances).values(user_id=user_id, balance=0))
    command = ChargePoints(command_id=new_command_id("crash"), user_id=user_id, amount=250)

    async with ShopflowClient(
        own_service_settings.kafka_bootstrap, topics=Topics(own_service_settings.topic_prefix)
    ) as client:
        crashing = await _start_worker(own_service_settings, FaultInjection.EXIT_AFTER_DB_COMMIT)
        try:
            await client.send(command)
            exit_code = await _wait_exit(crashing, timeout=60)
        finally:
            if crashing.returncode is None:
                crashing.kill()

        # Died after the commit: applied, but nothing published and nothing acknowledged.
        assert exit_code == 86
        assert await balance_of(engine, user_id) == 250
        assert client.results(command.command_id) == []

        restarted = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            result = await client.wait_for_result(command.command_id, timeout=90)
            await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one
        finally:
            restarted.terminate()
            assert await _wait_exit(restarted, timeout=30) == 0

    async with engine.connect() as connection:
        stored_event_id = (
            await connection.execute(
                select(processed_commands.c.event_id).where(
                    processed_commands.c.command_id == command.command_id
                )
            )
        ).scalar_one()
    assert isinstance(result, PointsCharged)
    assert result.balance == 250
    assert result.event_id == stored_event_id
    assert len(client.results(command.command_id)) == 1
    assert await balance_of(engine, user_id) == 250
    assert await transactions_of(engine, user_id) == [("charge", 250, command.command_id)]


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

    async with ShopflowClient(
        own_service_settings.kafka_bootstrap, topics=Topics(own_service_settings.topic_prefix)
    ) as client:
        for command in commands:
            await client.send(command)
        first = await _start_worker(own_service_settings, FaultInjection.NONE)
        await client.wait_for_result(commands[0].command_id, timeout=60)
        first.terminate()  # stop while the rest is being consumed
        assert await _wait_exit(first, timeout=60) == 0
        answered_by_first = sum(1 for c in commands if client.results(c.command_id))

        second = await _start_worker(own_service_settings, FaultInjection.NONE)
        try:
            for command in commands:
                await client.wait_for_result(command.command_id, timeout=90)
        finally:
            second.terminate()
            await _wait_exit(second, timeout=60)

    # Every command has exactly one outcome (redeliveries repeat the same event id) ...
    for command in commands:
        results = client.results(command.command_id)
        assert len({r.event_id for r in results}) == 1
        assert isinstance(results[0], PointsCharged)
    # ... and was applied once.
    for index, user_id in enumerate(user_ids):
        expected = sum(i + 1 for i in range(index, 1_000, 20))
        assert await balance_of(engine, user_id) == expected
        assert len(await transactions_of(engine, user_id)) == 50
    assert 0 < answered_by_first <= len(commands)
