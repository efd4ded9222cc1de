"""The real servers, shared by the whole session: one fresh database, one set of topics
behind a per-run prefix, one running service. Tests use their own ids, so nothing is
cleaned between them and nothing is restarted."""

from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from contracts.topics import Topics
from persistence.reconciliation import describe, find_violations
from persistence.sales_view import SalesView
from producers.client import ShopflowClient
from shopflow.app import prepare
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from tests.conftest import _RUN
from tests.infra import Endpoints, test_endpoints


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    with test_endpoints() as found:
        yield found


async def _ensure_service_role(connection: AsyncConnection) -> None:
    """The service's role, where the servers do not have it (testcontainers' PostgreSQL;
    scripts/infra.sh creates it)."""
    service = make_url(Settings().database_url)
    exists = await connection.scalar(
        text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": service.username}
    )
    if not exists:
        await connection.execute(
            text(f"CREATE ROLE \"{service.username}\" LOGIN PASSWORD '{service.password}'")
        )


@pytest.fixture(scope="session")
async def test_settings(endpoints: Endpoints) -> AsyncIterator[Settings]:
    database = f"shopflow_test_{_RUN}"
    admin = create_async_engine(endpoints.database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{database}"'))
        await _ensure_service_role(connection)
    owner_url = make_url(endpoints.database_url).set(database=database)
    # The service connects as its own role, as deployed: rows only, no schema rights.
    service = make_url(Settings().database_url)
    service_url = owner_url.set(username=service.username, password=service.password)
    settings = Settings(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        database_url=service_url.render_as_string(hide_password=False),
        migration_database_url=owner_url.render_as_string(hide_password=False),
        # Redis database 1, so a test may FLUSHDB without touching `make run`'s view (db 0).
        redis_url=str(make_url(endpoints.redis_url).set(database="1")),
        redis_key_prefix=f"test-{_RUN}:top",
        topic_prefix=f"test-{_RUN}.",
        consumer_group=f"shopflow-test-{_RUN}",
        batch_timeout_ms=20,
        session_timeout_ms=6000,
        # Small partition counts: a test run creates its own topics and deletes them after.
        command_partitions=3,
        event_partitions=3,
        dead_letter_partitions=1,
    )
    yield settings
    redis = Redis.from_url(settings.redis_url)
    await SalesView(redis, prefix=settings.redis_key_prefix).clear()
    await redis.aclose()
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await kafka_admin.start()
    try:
        existing = set(await kafka_admin.list_topics())
        await kafka_admin.delete_topics(
            [t for t in existing if t.startswith(settings.topic_prefix)]
        )
    finally:
        await kafka_admin.close()
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def service(test_settings: Settings) -> AsyncIterator[Runtime]:
    """The service, consuming, as `shopflow serve` runs it (without the HTTP server).

    When the session ends, the reconciliation check runs over everything the tests did
    (as `shopflow check` does): any broken invariant fails the run."""
    runtime = Runtime.build(test_settings)
    await prepare(test_settings)
    await runtime.start()
    yield runtime
    await runtime.stop()
    violations = await find_violations(runtime.engine)
    await runtime.engine.dispose()
    assert not violations, describe(violations)


@pytest.fixture(scope="session")
def engine(service: Runtime) -> AsyncEngine:
    return service.engine


@pytest.fixture(scope="session")
async def owner_engine(service: Runtime, test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The schema owner's connections, for a test that changes the schema (a trigger)."""
    owner = create_async_engine(test_settings.migration_database_url)
    yield owner
    await owner.dispose()


@pytest.fixture(scope="session")
async def client(service: Runtime, test_settings: Settings) -> AsyncIterator[ShopflowClient]:
    async with ShopflowClient(
        test_settings.kafka_bootstrap, topics=Topics(test_settings.topic_prefix)
    ) as started:
        yield started
