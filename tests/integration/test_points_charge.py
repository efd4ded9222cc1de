"""ChargePoints end to end: Kafka in, PostgreSQL changed once, one result event out."""

import asyncio

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged, PointsChargeRejected, RejectionReason
from shopflow.contracts.limits import MAX_BALANCE
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.tables import point_balances, point_transactions
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support.database import balance_of, transactions_of
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import registered_user


async def test_charge_yields_points_charged_with_new_balance_and_one_transaction(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    command = ChargePoints(command_id=new_command_id("charge"), user_id=user_id, amount=1_500)

    event = await client.send_and_wait(command)

    assert isinstance(event, PointsCharged)
    assert (event.user_id, event.amount, event.balance) == (user_id, 1_500, 1_500)
    assert await balance_of(engine, user_id) == 1_500
    assert await transactions_of(engine, user_id) == [("charge", 1_500, command.command_id)]


async def test_successive_charges_accumulate(client: ShopflowClient, engine: AsyncEngine) -> None:
    user_id = await registered_user(client)

    first = await client.send_and_wait(
        ChargePoints(command_id=new_command_id(), user_id=user_id, amount=100)
    )
    second = await client.send_and_wait(
        ChargePoints(command_id=new_command_id(), user_id=user_id, amount=250)
    )

    assert isinstance(first, PointsCharged)
    assert isinstance(second, PointsCharged)
    assert (first.balance, second.balance) == (100, 350)
    assert second.transaction_id > first.transaction_id
    assert await balance_of(engine, user_id) == 350


async def test_same_charge_sent_five_times_is_applied_once_with_one_event_id(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    command = ChargePoints(command_id=new_command_id("dup"), user_id=user_id, amount=700)

    for _ in range(5):
        await client.send(command)
    results = await client.wait_for_results(command.command_id, count=5)
    # One more after everything settled: a resend long after the first delivery.
    await client.send(command)
    results = await client.wait_for_results(command.command_id, count=6)

    assert len({r.event_id for r in results}) == 1
    assert all(isinstance(r, PointsCharged) and r.balance == 700 for r in results)
    assert await balance_of(engine, user_id) == 700
    assert len(await transactions_of(engine, user_id)) == 1


async def test_same_charge_from_ten_concurrent_producers_is_applied_once(
    client: ShopflowClient, engine: AsyncEngine, test_settings: Settings
) -> None:
    user_id = await registered_user(client)
    command = ChargePoints(command_id=new_command_id("race"), user_id=user_id, amount=42)
    producers = [kafka_connection(test_settings, OPS).producer() for _ in range(10)]
    await asyncio.gather(*(p.start() for p in producers))
    try:
        await asyncio.gather(
            *(
                p.send_and_wait(
                    f"{test_settings.topic_prefix}shop.points.charge",
                    command.model_dump_json().encode(),
                    key=str(user_id).encode(),
                )
                for p in producers
            )
        )
    finally:
        await asyncio.gather(*(p.stop() for p in producers))

    results = await client.wait_for_results(command.command_id, count=10)

    assert len({r.event_id for r in results}) == 1
    assert await balance_of(engine, user_id) == 42
    assert len(await transactions_of(engine, user_id)) == 1


async def test_charge_for_unknown_user_is_rejected_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = new_entity_id()

    event = await client.send_and_wait(
        ChargePoints(command_id=new_command_id(), user_id=user_id, amount=10)
    )

    assert isinstance(event, PointsChargeRejected)
    assert event.reason is RejectionReason.UNKNOWN_USER
    assert event.user_id == user_id
    assert await balance_of(engine, user_id) is None
    assert await transactions_of(engine, user_id) == []


async def test_reused_command_id_with_other_payload_is_a_conflict_and_applies_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    command_id = new_command_id("reuse")
    first = await client.send_and_wait(
        ChargePoints(command_id=command_id, user_id=user_id, amount=300)
    )

    await client.send(ChargePoints(command_id=command_id, user_id=user_id, amount=999))
    results = await client.wait_for_results(command_id, count=2)

    conflict = results[1]
    assert isinstance(first, PointsCharged)
    assert isinstance(conflict, PointsChargeRejected)
    assert conflict.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert conflict.event_id != first.event_id
    assert await balance_of(engine, user_id) == 300
    assert await transactions_of(engine, user_id) == [("charge", 300, command_id)]


async def test_charge_past_the_balance_ceiling_is_rejected_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    # Reaching 10^15 takes 10^6 maximal charges; write the equivalent history directly
    # (balance and a matching transaction, so the books still reconcile).
    async with engine.begin() as connection:
        await connection.execute(
            update(point_balances)
            .where(point_balances.c.user_id == user_id)
            .values(balance=MAX_BALANCE - 5)
        )
        await connection.execute(
            insert(point_transactions).values(
                user_id=user_id,
                kind="charge",
                amount=MAX_BALANCE - 5,
                balance_after=MAX_BALANCE - 5,
                command_id="seed",
            )
        )

    event = await client.send_and_wait(
        ChargePoints(command_id=new_command_id(), user_id=user_id, amount=6)
    )

    assert isinstance(event, PointsChargeRejected)
    assert event.reason is RejectionReason.BALANCE_LIMIT_EXCEEDED
    assert await balance_of(engine, user_id) == MAX_BALANCE - 5
    assert len(await transactions_of(engine, user_id)) == 1
