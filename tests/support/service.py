"""Set-ups through a running service (its client sends the commands and waits for their
results), and the settings of a service instance of a test's own."""

import asyncio

from shopflow.contracts.commands import (
    ChargePoints,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    UpsertProduct,
)
from shopflow.contracts.events import OrderPlaced, PointsCharged, ProductUpserted, UserRegistered
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


async def placed_order(
    client: ShopflowClient, user_id: int, product_id: int, quantity: int
) -> OrderPlaced:
    """An order of `quantity` units of one product, placed (the test fails otherwise)."""
    event = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id("order"),
            user_id=user_id,
            items=[OrderLine(product_id=product_id, quantity=quantity)],
        )
    )
    assert isinstance(event, OrderPlaced), event
    return event


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
