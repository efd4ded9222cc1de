"""Cart batches and order batches on the same products, at once: no deadlock.

An order batch locks its products; a cart batch inserts cart lines, and each inserted
line takes a key-share lock on its product (the foreign key), in the order of the
lines, not of the products. With the products locked `FOR UPDATE` the two deadlocked
(PostgreSQL broke the cycle, and the commands were retried one by one or answered
temporarily_unavailable). This stream makes them meet; PostgreSQL's own deadlock
counter must not move, and every command must get its real answer.
"""

import asyncio
import random

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.commands import AddCartItem, Command, OrderLine, PlaceOrder
from contracts.events import CartItemAdded, OrderPlaced
from contracts.topics import Topics
from producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.conftest import new_command_id
from tests.integration.helpers import funded_users, isolated, new_product, running


async def _deadlocks(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        statement = text(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        return int((await connection.execute(statement)).scalar_one())


async def test_cart_and_order_batches_on_the_same_products_do_not_deadlock(
    test_settings: Settings, engine: AsyncEngine
) -> None:
    # Small batches: many cart and order transactions, overlapping in time.
    settings = isolated(test_settings, "locks", batch_max_records=20)
    async with (
        running(settings),
        ShopflowClient(settings.kafka_bootstrap, topics=Topics(settings.topic_prefix)) as client,
    ):
        await _race(client, engine)


async def _race(client: ShopflowClient, engine: AsyncEngine) -> None:
    users = await funded_users(client, 60, 10**9)
    # Few units per product (an order takes 2 of 16): the shared top-products window
    # must still see other tests' best sellers (1,000 units) in its top five.
    products = [await new_product(client, price=1, stock=10**6) for _ in range(16)]
    rng = random.Random(5)
    commands: list[Command] = []
    for i in range(4_000):
        user_id = rng.choice(users)
        if i % 2:
            lines = rng.sample(products, 2)  # in no particular product order
            commands.append(
                PlaceOrder(
                    command_id=new_command_id("lock-order"),
                    user_id=user_id,
                    items=[OrderLine(product_id=p, quantity=1) for p in lines],
                )
            )
        else:
            commands.append(
                AddCartItem(
                    command_id=new_command_id("lock-cart"),
                    user_id=user_id,
                    product_id=rng.choice(products),
                    quantity=1,
                )
            )
    before = await _deadlocks(engine)

    await asyncio.gather(*(client.send(c) for c in commands))
    results = [await client.wait_for_result(c.command_id, timeout=120) for c in commands]

    assert await _deadlocks(engine) == before
    assert all(isinstance(r, OrderPlaced | CartItemAdded) for r in results), {
        type(r).__name__ + ":" + str(getattr(r, "reason", "")) for r in results
    }
