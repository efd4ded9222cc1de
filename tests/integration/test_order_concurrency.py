"""Many orders racing for scarce stock, with two service instances in one consumer group
(each batch its own transaction): no oversell, no overdraft, no deadlock, exactly one
result per command, and the books add up."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.app import prepare
from shopflow.contracts.commands import ChargePoints, OrderLine, PlaceOrder
from shopflow.contracts.events import OrderPlaced, OrderRejected, PointsCharged, RejectionReason
from shopflow.contracts.topics import Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.tables import orders as order_rows
from shopflow.producers.client import ShopflowClient
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.database import balances_of, stock_of
from tests.support.ids import new_command_id
from tests.support.service import funded_users, isolated, new_product


@pytest.fixture
async def two_instances(test_settings: Settings) -> AsyncIterator[ShopflowClient]:
    settings = isolated(test_settings, "race", batch_max_records=50)
    instances = [Runtime.build(settings) for _ in range(2)]
    await provisioned(settings)
    await prepare(settings)
    await asyncio.gather(*(runtime.start() for runtime in instances))
    try:
        async with ShopflowClient(
            kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
        ) as client:
            yield client
    finally:
        await asyncio.gather(*(runtime.stop() for runtime in instances))


async def _orders(engine: AsyncEngine, user_ids: list[int]) -> set[tuple[int, int, str, int]]:
    """(user id, order id, command id, total) of every order the users have."""
    async with engine.connect() as connection:
        c = order_rows.c
        rows = await connection.execute(
            select(c.user_id, c.order_id, c.command_id, c.total).where(c.user_id.in_(user_ids))
        )
        return {(r.user_id, r.order_id, r.command_id, r.total) for r in rows}


def _as_rows(placed: list[OrderPlaced]) -> set[tuple[int, int, str, int]]:
    return {(p.user_id, p.order_id, p.command_id, p.total) for p in placed}


async def _send_all(client: ShopflowClient, commands: list[PlaceOrder]) -> None:
    await asyncio.gather(*(client.send(command) for command in commands))


async def test_200_orders_from_50_users_for_stock_37_sell_exactly_37(
    two_instances: ShopflowClient, engine: AsyncEngine
) -> None:
    client = two_instances
    users = await funded_users(client, 50, 1_000)
    product_id = await new_product(client, price=100, stock=37)
    before = await balances_of(engine, users)
    orders = [
        PlaceOrder(
            command_id=new_command_id("scarce"),
            user_id=users[i % 50],
            items=[OrderLine(product_id=product_id, quantity=1)],
        )
        for i in range(200)
    ]
    # Charges for the same users race with the orders for their balance rows.
    charges = [
        ChargePoints(command_id=new_command_id("race-charge"), user_id=user_id, amount=1)
        for user_id in users
    ]

    await asyncio.gather(_send_all(client, orders), *(client.send(charge) for charge in charges))
    results = [await client.wait_for_results(o.command_id, timeout=120) for o in orders]
    charged = [await client.wait_for_result(c.command_id, timeout=120) for c in charges]

    assert all(len({r.event_id for r in rs}) == 1 for rs in results)
    outcomes = [rs[0] for rs in results]
    placed = [r for r in outcomes if isinstance(r, OrderPlaced)]
    rejected = [r for r in outcomes if isinstance(r, OrderRejected)]
    assert len(placed) == 37
    assert len(rejected) == 163
    assert {r.reason for r in rejected} == {RejectionReason.OUT_OF_STOCK}
    assert all(isinstance(c, PointsCharged) for c in charged)
    assert await stock_of(engine, product_id) == 37 - len(placed) == 0
    # Not "every balance >= 0": the balance_not_negative CHECK guarantees that whatever
    # the service does. Exact books do not follow from any constraint: each user paid 100
    # per accepted order and nothing for a rejected one, and got the racing charge's 1.
    assert all(p.total == 100 for p in placed)
    assert await balances_of(engine, users) == {
        u: before[u] + 1 - sum(p.total for p in placed if p.user_id == u) for u in users
    }
    # Only the accepted orders were written, each once, as their events say.
    assert await _orders(engine, users) == _as_rows(placed)


async def test_orders_of_two_products_in_opposite_orders_neither_deadlock_nor_oversell(
    two_instances: ShopflowClient, engine: AsyncEngine
) -> None:
    client = two_instances
    users = await funded_users(client, 50, 10_000)
    first = await new_product(client, price=10, stock=40)
    second = await new_product(client, price=20, stock=40)
    orders = [
        PlaceOrder(
            command_id=new_command_id("opposite"),
            user_id=users[i % 50],
            items=[
                OrderLine(product_id=a, quantity=1)
                for a in ((first, second) if i % 2 else (second, first))
            ],
        )
        for i in range(100)
    ]

    await _send_all(client, orders)
    outcomes = [await client.wait_for_result(o.command_id, timeout=120) for o in orders]

    placed = [r for r in outcomes if isinstance(r, OrderPlaced)]
    rejected = [r for r in outcomes if isinstance(r, OrderRejected)]
    assert len(placed) == 40
    assert len(rejected) == 60
    assert {r.reason for r in rejected} == {RejectionReason.OUT_OF_STOCK}
    assert (await stock_of(engine, first), await stock_of(engine, second)) == (0, 0)
    # Each user paid 10 + 20 per accepted order and nothing for a rejected one (rather
    # than "the first user still has a balance row", which nothing here could remove).
    assert all(p.total == 30 for p in placed)
    assert await balances_of(engine, users) == {
        u: 10_000 - 30 * sum(1 for p in placed if p.user_id == u) for u in users
    }
    assert await _orders(engine, users) == _as_rows(placed)
