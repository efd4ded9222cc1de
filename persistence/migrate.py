"""Apply the Alembic migrations to head, safely from several processes at once, as the
schema's owner; then grant the service's role what it needs and nothing more."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.database import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant: serializes concurrent `upgrade_to_head` calls (workers starting together).
_MIGRATION_LOCK_ID = 0x5F0F1_0001


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


# The service reads and writes rows; it creates, alters and drops nothing (PostgreSQL 15
# gives PUBLIC no CREATE on the public schema, and only an owner may alter or drop).
_SERVICE_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)
# The HTTP queries' role reads, so that a bug on the read side cannot write.
_READER_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
)


async def migrate(migration_url: str, service_url: str, reader_url: str | None = None) -> None:
    """Migrate to head as the role of `migration_url`, then grant the role of
    `service_url` the rights on rows of every table, and the role of `reader_url` (the
    HTTP queries') SELECT on them (tables a later migration adds are granted when it
    runs). Idempotent."""
    engine = create_engine(migration_url, pool_size=1)
    try:
        await upgrade_to_head(engine)
        owner = make_url(migration_url).username
        grants: dict[str | None, tuple[str, ...]] = {
            make_url(service_url).username: _SERVICE_GRANTS
        }
        if reader_url is not None:
            grants.setdefault(make_url(reader_url).username, _READER_GRANTS)
        async with engine.begin() as connection:
            # Serialized too: two processes granting at once update the same catalog
            # rows, and PostgreSQL refuses the second ("tuple concurrently updated").
            # Found by two workers starting together in `make test`'s benchmark smoke run.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            for user, statements in grants.items():
                if not user or user == owner:
                    continue
                role = connection.dialect.identifier_preparer.quote(user)
                for grant in statements:
                    await connection.execute(text(grant.format(role=role)))
    finally:
        await engine.dispose()
