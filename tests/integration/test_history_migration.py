"""Migration 0004 fills in the history of rows written before it: each order's status,
each point transaction's balance after it and its order, each order line's product name."""

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import make_url, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopflow.persistence.migrate import alembic_config
from shopflow.persistence.tables import order_lines, orders, point_transactions
from shopflow.testing.servers import Endpoints

PLACED_AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.fixture
async def before_0004(endpoints: Endpoints) -> AsyncIterator[AsyncEngine]:
    """A database of its own, migrated up to 0003 only."""
    name = f"shopflow_migration_{secrets.token_hex(4)}"
    admin = create_async_engine(endpoints.database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_async_engine(make_url(endpoints.database_url).set(database=name))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "0003")
        yield engine
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_existing_transactions_and_lines_get_their_history(
    before_0004: AsyncEngine,
) -> None:
    async with before_0004.begin() as connection:
        await connection.execute(
            text("INSERT INTO users (user_id, name) VALUES (1, 'Ann'), (2, 'Bo')")
        )
        await connection.execute(
            text("INSERT INTO products (product_id, name, price, stock) VALUES (7, 'Mug', 300, 5)")
        )
        order_id = (
            await connection.execute(
                text(
                    "INSERT INTO orders (user_id, command_id, total, placed_at)"
                    " VALUES (1, 'order-1', 600, :at) RETURNING order_id"
                ),
                {"at": PLACED_AT},
            )
        ).scalar_one()
        await connection.execute(
            text(
                "INSERT INTO order_lines"
                " (order_id, product_id, user_id, quantity, unit_price, placed_at)"
                " VALUES (:order_id, 7, 1, 2, 300, :at)"
            ),
            {"order_id": order_id, "at": PLACED_AT},
        )
        # Interleaved users: the running sums are per user, in transaction order.
        await connection.execute(
            text(
                "INSERT INTO point_transactions (user_id, kind, amount, command_id) VALUES"
                " (1, 'charge', 1000, 'charge-1'), (2, 'charge', 50, 'charge-2'),"
                " (1, 'use', -600, 'order-1'), (1, 'charge', 5, 'charge-3')"
            )
        )

    async with before_0004.begin() as connection:
        await connection.run_sync(_upgrade, "head")

    async with before_0004.connect() as connection:
        transactions = (
            await connection.execute(
                select(
                    point_transactions.c.command_id,
                    point_transactions.c.balance_after,
                    point_transactions.c.order_id,
                ).order_by(point_transactions.c.transaction_id)
            )
        ).all()
        names = (await connection.execute(select(order_lines.c.name))).scalars().all()
        statuses = (await connection.execute(select(orders.c.status))).scalars().all()

    assert [tuple(row) for row in transactions] == [
        ("charge-1", 1000, None),
        ("charge-2", 50, None),
        ("order-1", 400, order_id),
        ("charge-3", 405, None),
    ]
    assert names == ["Mug"]
    assert statuses == ["placed"]
