"""Alembic environment. Run through `persistence.migrate` (which hands over a connection)
or through the `alembic` command with `-x url=...` / SHOPFLOW_MIGRATION_DATABASE_URL (the
schema owner)."""

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shopflow.persistence.tables import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


shared_connection = config.attributes.get("connection")
if shared_connection is not None:
    _run(shared_connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "SHOPFLOW_MIGRATION_DATABASE_URL",
        "postgresql+asyncpg://shopflow_owner:shopflow_owner@127.0.0.1:5432/shopflow",
    )
    asyncio.run(_run_with_own_engine(url))
