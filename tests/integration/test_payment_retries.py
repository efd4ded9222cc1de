"""Payments and refunds go through the domain's gateway port; a declined one is retried
3 times.

The service here runs with a gateway that declines a scripted number of attempts per
user before handing over to the real (PostgreSQL) gateway.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shopflow.app import prepare
from shopflow.contracts.commands import CancelOrder, OrderLine, PlaceOrder
from shopflow.contracts.events import (
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderRejected,
    RejectionReason,
)
from shopflow.contracts.topics import Topics
from shopflow.domain.payment import Payment, PaymentDeclined, Refund
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.payments import PointsPaymentGateway
from shopflow.persistence.tables import payments, refunds
from shopflow.producers.client import ShopflowClient
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.database import balance_of, orders_of, stock_of
from tests.support.ids import new_command_id
from tests.support.service import funded_user, isolated, new_product

T = TypeVar("T")


@dataclass
class DeclineScript:
    remaining: dict[int, int] = field(default_factory=dict)  # user id -> declines left
    attempts: dict[int, int] = field(default_factory=dict)


class ScriptedGateway:
    pays_in_transaction = True

    def __init__(self, connection: AsyncConnection, script: DeclineScript) -> None:
        self._real = PointsPaymentGateway(connection)
        self._script = script

    async def pay_all(self, payments: Sequence[Payment]) -> list[PaymentDeclined | None]:
        return [await self._attempt(p.user_id, self._real.pay_all, p) for p in payments]

    async def refund_all(self, refunds: Sequence[Refund]) -> list[PaymentDeclined | None]:
        return [await self._attempt(r.user_id, self._real.refund_all, r) for r in refunds]

    async def _attempt(
        self,
        user_id: int,
        real: Callable[[list[T]], Awaitable[list[PaymentDeclined | None]]],
        settlement: T,
    ) -> PaymentDeclined | None:
        """Declined while the user's script says so, else made by the real gateway."""
        self._script.attempts[user_id] = self._script.attempts.get(user_id, 0) + 1
        if self._script.remaining.get(user_id, 0) > 0:
            self._script.remaining[user_id] -= 1
            return PaymentDeclined("scripted decline")
        (answer,) = await real([settlement])
        return answer


@pytest.fixture
async def declining_service(
    test_settings: Settings,
) -> AsyncIterator[tuple[ShopflowClient, DeclineScript]]:
    settings = isolated(test_settings, "pay")
    script = DeclineScript()
    runtime = Runtime.build(
        settings, payment_gateway=lambda connection: ScriptedGateway(connection, script)
    )
    await provisioned(settings)
    await prepare(settings)
    await runtime.start()
    try:
        async with ShopflowClient(
            kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
        ) as client:
            yield client, script
    finally:
        await runtime.stop()


async def _payments_of(engine: AsyncEngine, command_id: str) -> int:
    async with engine.connect() as connection:
        statement = (
            select(func.count()).select_from(payments).where(payments.c.command_id == command_id)
        )
        return int((await connection.execute(statement)).scalar_one())


async def test_payment_failing_three_times_then_succeeding_places_the_order(
    declining_service: tuple[ShopflowClient, DeclineScript], engine: AsyncEngine
) -> None:
    client, script = declining_service
    user_id = await funded_user(client, 1_000)
    product_id = await new_product(client, price=250, stock=4)
    script.remaining[user_id] = 3
    command = PlaceOrder(
        command_id=new_command_id(),
        user_id=user_id,
        items=[OrderLine(product_id=product_id, quantity=2)],
    )

    event = await client.send_and_wait(command)

    assert isinstance(event, OrderPlaced)
    assert script.attempts[user_id] == 4
    assert await _payments_of(engine, command.command_id) == 1
    assert await balance_of(engine, user_id) == 500
    assert await stock_of(engine, product_id) == 2


async def test_payment_failing_four_times_is_payment_failed_and_changes_nothing(
    declining_service: tuple[ShopflowClient, DeclineScript], engine: AsyncEngine
) -> None:
    client, script = declining_service
    user_id = await funded_user(client, 1_000)
    product_id = await new_product(client, price=250, stock=4)
    script.remaining[user_id] = 4
    command = PlaceOrder(
        command_id=new_command_id(),
        user_id=user_id,
        items=[OrderLine(product_id=product_id, quantity=2)],
    )

    event = await client.send_and_wait(command)

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.PAYMENT_FAILED
    assert script.attempts[user_id] == 4
    assert await _payments_of(engine, command.command_id) == 0
    assert await balance_of(engine, user_id) == 1_000
    assert await stock_of(engine, product_id) == 4
    assert await orders_of(engine, user_id) == []


async def test_a_refund_failing_four_times_refuses_the_cancel_and_a_later_one_refunds(
    declining_service: tuple[ShopflowClient, DeclineScript], engine: AsyncEngine
) -> None:
    client, script = declining_service
    user_id = await funded_user(client, 1_000)
    product_id = await new_product(client, price=250, stock=4)
    placed = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id(),
            user_id=user_id,
            items=[OrderLine(product_id=product_id, quantity=2)],
        )
    )
    assert isinstance(placed, OrderPlaced)
    script.attempts.clear()
    script.remaining[user_id] = 4

    refused = await client.send_and_wait(
        CancelOrder(command_id=new_command_id(), user_id=user_id, order_id=placed.order_id)
    )

    assert isinstance(refused, OrderCancelRejected)
    assert refused.reason is RejectionReason.PAYMENT_FAILED
    assert script.attempts[user_id] == 4
    assert (await balance_of(engine, user_id), await stock_of(engine, product_id)) == (500, 2)
    assert await _refunds_of(engine, placed.command_id) == 0

    # The order is still placed: a new cancel goes through (its refund on the first try).
    cancelled = await client.send_and_wait(
        CancelOrder(command_id=new_command_id(), user_id=user_id, order_id=placed.order_id)
    )

    assert isinstance(cancelled, OrderCancelled)
    assert script.attempts[user_id] == 5
    assert (await balance_of(engine, user_id), await stock_of(engine, product_id)) == (1_000, 4)
    assert await _refunds_of(engine, placed.command_id) == 1


async def _refunds_of(engine: AsyncEngine, payment_command_id: str) -> int:
    async with engine.connect() as connection:
        statement = (
            select(func.count())
            .select_from(refunds)
            .where(refunds.c.payment_command_id == payment_command_id)
        )
        return int((await connection.execute(statement)).scalar_one())
