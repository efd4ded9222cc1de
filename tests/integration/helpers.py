"""Small reads and set-ups the integration tests share."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.commands import RegisterUser
from contracts.events import UserRegistered
from persistence.tables import point_balances, point_transactions, processed_commands
from producers.client import ShopflowClient
from tests.conftest import new_command_id, new_entity_id


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
