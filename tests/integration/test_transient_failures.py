"""Transient database failures are retried up to 3 times (the seed's rule); past that
the answer is `temporarily_unavailable` and the command_id is not spent.

Failures are injected by `tests.support.database.failing_point_inserts`.
"""

from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged, PointsChargeRejected, RejectionReason
from shopflow.producers.client import ShopflowClient
from tests.support.database import (
    balance_of,
    failing_point_inserts,
    ledger_rows,
    transactions_of,
)
from tests.support.ids import new_command_id
from tests.support.service import registered_user


async def test_charge_failing_three_times_is_retried_and_applied_once(
    client: ShopflowClient, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    command = ChargePoints(command_id=new_command_id(), user_id=user_id, amount=80)

    async with failing_point_inserts(owner_engine, user_id, failures=3):
        event = await client.send_and_wait(command)

    assert isinstance(event, PointsCharged)
    assert await balance_of(engine, user_id) == 80
    assert await transactions_of(engine, user_id) == [("charge", 80, command.command_id)]


async def test_charge_failing_four_times_is_temporarily_unavailable_and_can_be_resent(
    client: ShopflowClient, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    command = ChargePoints(command_id=new_command_id(), user_id=user_id, amount=80)

    async with failing_point_inserts(owner_engine, user_id, failures=4):
        first = await client.send_and_wait(command)

    assert isinstance(first, PointsChargeRejected)
    assert first.reason is RejectionReason.TEMPORARILY_UNAVAILABLE
    assert await balance_of(engine, user_id) == 0
    assert await ledger_rows(engine, command.command_id) == 0  # the key is not spent

    await client.send(command)  # the injected failures are gone now
    results = await client.wait_for_results(command.command_id, count=2)

    assert isinstance(results[1], PointsCharged)
    assert results[1].event_id != first.event_id
    assert await balance_of(engine, user_id) == 80
