"""Small reads and set-ups the integration tests share."""

import asyncio

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints, RegisterUser, UpsertProduct
from shopflow.contracts.events import PointsCharged, ProductUpserted, UserRegistered
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
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support.ids import new_command_id, new_entity_id


async def registered_user(client: ShopflowClient, name: str = "Test user") -> int:
    user_id = new_entity_id()
    event = await client.send_and_wait(
        RegisterUser(command_id=new_command_id("register"), user_id=user_id, name=name)
    )
    assert isinstance(event, UserRegistered)
    return user_id


async def balance_of(engine: AsyncEngine, user_id: int) -> int | None:
    async with engine.connect() as connection:
        statement = select(point_balances.c.balance).where(point_balances.c.user_id == user_id)
        return (await connection.execute(statement)).scalar_one_or_none()


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


async def funded_user(client: ShopflowClient, points: int) -> int:
    """A registered user with `points` charged."""
    user_id = await registered_user(client)
    if points:
        event = await client.send_and_wait(
            ChargePoints(command_id=new_command_id("fund"), user_id=user_id, amount=points)
        )
        assert isinstance(event, PointsCharged)
    return user_id


async def new_product(client: ShopflowClient, *, price: int, stock: int) -> int:
    product_id = new_entity_id()
    event = await client.send_and_wait(
        UpsertProduct(
            command_id=new_command_id("product"),
            product_id=product_id,
            name=f"Product {product_id % 1000}",
            price=price,
            stock_added=stock,
        )
    )
    assert isinstance(event, ProductUpserted)
    return product_id


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


async def funded_users(client: ShopflowClient, count: int, points: int) -> list[int]:
    """`count` registered users with `points` each, set up concurrently."""
    user_ids = [new_entity_id() for _ in range(count)]
    registrations = [
        RegisterUser(command_id=new_command_id("register"), user_id=u, name="Racer")
        for u in user_ids
    ]
    charges = [
        ChargePoints(command_id=new_command_id("fund"), user_id=u, amount=points) for u in user_ids
    ]
    for batch in (registrations, charges):
        await asyncio.gather(*(client.send(command) for command in batch))
        for command in batch:
            event = await client.wait_for_result(command.command_id)
            assert isinstance(event, UserRegistered | PointsCharged)
    return user_ids


def isolated(settings: Settings, label: str, **overrides: object) -> Settings:
    """Settings for a service instance of a test's own: its own topics (a prefix) and
    consumer groups, the session's database and Redis."""
    suffix = new_command_id(label)
    return settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}{suffix}.",
            "consumer_group": f"{settings.consumer_group}.{suffix}",
            **overrides,
        }
    )


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
