"""The service connects with a role of its own that reads and writes rows and can change
nothing of the schema; the migrations run as the schema's owner (issue: a database role
for the service with only the rights it needs)."""

import asyncio

import pytest
from sqlalchemy import delete, func, insert, make_url, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from shopflow.persistence.migrate import migrate
from shopflow.persistence.tables import users
from shopflow.settings import Settings
from tests.support.ids import new_entity_id

SCHEMA_CHANGES = [
    "DROP TABLE users",
    "ALTER TABLE users ADD COLUMN intruder integer",
    "ALTER TABLE point_balances DROP CONSTRAINT balance_not_negative",
    "CREATE TABLE intruder (x integer)",
    "TRUNCATE processed_commands",
    "CREATE INDEX intruder ON users (name)",
]


@pytest.mark.usefixtures("service")  # migrated, and the grants given
@pytest.mark.parametrize("statement", SCHEMA_CHANGES)
async def test_the_service_role_cannot_change_the_schema(
    test_settings: Settings, statement: str
) -> None:
    engine = create_async_engine(test_settings.database_url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(text(statement))
            await connection.rollback()
    finally:
        await engine.dispose()

    assert getattr(raised.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege


@pytest.mark.usefixtures("service")
async def test_the_service_role_reads_and_writes_rows(test_settings: Settings) -> None:
    user_id = new_entity_id()
    engine = create_async_engine(test_settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(users).values(user_id=user_id, name="Row"))
            await connection.execute(
                users.update().where(users.c.user_id == user_id).values(name="Row 2")
            )
            name = await connection.scalar(select(users.c.name).where(users.c.user_id == user_id))
            await connection.execute(delete(users).where(users.c.user_id == user_id))
    finally:
        await engine.dispose()

    assert name == "Row 2"


@pytest.mark.usefixtures("service")
async def test_the_tables_belong_to_the_migrations_role_not_the_service_role(
    test_settings: Settings,
) -> None:
    engine = create_async_engine(test_settings.database_url)
    try:
        async with engine.connect() as connection:
            owners = set(
                (
                    await connection.execute(
                        text(
                            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
                        )
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()

    service = make_url(test_settings.database_url).username
    owner = make_url(test_settings.migration_database_url).username
    assert service != owner
    assert owners == {owner}


@pytest.mark.usefixtures("service")
async def test_the_read_only_role_reads_rows_and_is_refused_a_write(
    test_settings: Settings,
) -> None:
    engine = create_async_engine(test_settings.query_database_url)
    try:
        async with engine.connect() as connection:
            counted = await connection.scalar(select(func.count()).select_from(users))
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(insert(users).values(user_id=new_entity_id(), name="W"))
            await connection.rollback()
    finally:
        await engine.dispose()

    assert counted is not None
    assert getattr(raised.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege


@pytest.mark.parametrize("password", ["not-the-password", ""])
async def test_postgresql_refuses_the_service_role_without_its_password(
    test_settings: Settings, password: str
) -> None:
    url = make_url(test_settings.database_url).set(password=password)
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as raised:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()

    # 28P01 invalid_password: checked (scram-sha-256), even on loopback.
    assert getattr(raised.value.orig, "sqlstate", None) == "28P01"


async def test_several_processes_migrating_and_granting_at_once_all_succeed(
    test_settings: Settings,
) -> None:
    # Workers start together (two in `make bench`'s drains): each migrates and grants.
    await asyncio.gather(
        *(
            migrate(
                test_settings.migration_database_url,
                test_settings.database_url,
                test_settings.query_database_url,
            )
            for _ in range(6)
        )
    )
