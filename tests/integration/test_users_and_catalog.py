"""RegisterUser and UpsertProduct end to end."""

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import RegisterUser, UpsertProduct
from shopflow.contracts.events import ProductUpserted, RejectionReason, UserRegistered, UserRejected
from shopflow.persistence.ledger import Ledger
from shopflow.persistence.tables import processed_commands
from shopflow.producers.client import ShopflowClient
from shopflow.queries.read_model import ReadModel
from tests.support.database import balance_of, ledger_rows
from tests.support.ids import new_command_id, new_entity_id


async def test_registered_user_starts_with_zero_points(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = new_entity_id()

    event = await client.send_and_wait(
        RegisterUser(command_id=new_command_id(), user_id=user_id, name="Alice")
    )

    assert isinstance(event, UserRegistered)
    assert (event.user_id, event.name) == (user_id, "Alice")
    assert await balance_of(engine, user_id) == 0


async def test_registering_a_taken_user_id_is_rejected_as_user_exists(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = new_entity_id()
    await client.send_and_wait(RegisterUser(command_id=new_command_id(), user_id=user_id, name="A"))

    event = await client.send_and_wait(
        RegisterUser(command_id=new_command_id(), user_id=user_id, name="B")
    )

    assert isinstance(event, UserRejected)
    assert event.reason is RejectionReason.USER_EXISTS
    assert await balance_of(engine, user_id) == 0


async def test_upsert_creates_then_renames_reprices_and_adds_stock(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    product_id = new_entity_id()

    created = await client.send_and_wait(
        UpsertProduct(
            command_id=new_command_id(), product_id=product_id, name="Mug", price=900, stock_added=5
        )
    )
    updated = await client.send_and_wait(
        UpsertProduct(
            command_id=new_command_id(),
            product_id=product_id,
            name="Big mug",
            price=1200,
            stock_added=3,
        )
    )

    assert isinstance(created, ProductUpserted)
    assert created.stock == 5
    assert isinstance(updated, ProductUpserted)
    assert (updated.name, updated.price, updated.stock) == ("Big mug", 1200, 8)
    read_model = ReadModel(engine)
    view = await read_model.product(product_id)
    await read_model.close()
    assert view is not None
    assert (view.name, view.price, view.stock) == ("Big mug", 1200, 8)


async def test_ledger_purge_forgets_only_ids_past_retention(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    recent = RegisterUser(command_id=new_command_id("recent"), user_id=new_entity_id(), name="R")
    old = RegisterUser(command_id=new_command_id("old"), user_id=new_entity_id(), name="O")
    await client.send_and_wait(recent)
    await client.send_and_wait(old)
    async with engine.begin() as connection:
        await connection.execute(
            update(processed_commands)
            .where(processed_commands.c.command_id == old.command_id)
            .values(created_at=func.now() - func.make_interval(0, 0, 0, 8))
        )

    async with engine.begin() as connection:
        removed = await Ledger(connection).purge_older_than_days(7)

    assert removed >= 1
    assert await ledger_rows(engine, old.command_id) == 0
    assert await ledger_rows(engine, recent.command_id) == 1
