"""A shopflow of one's own on shared servers: a fresh database and topic prefix per test
session, and the service running on them as it really runs, all removed afterwards."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from shopflow.app import prepare
from shopflow.kafka_access import ADMIN, kafka_connection
from shopflow.kafka_admin import ensure_topics
from shopflow.ops.access import provision, revoke_topic_acls
from shopflow.persistence.reconciliation import describe, find_violations
from shopflow.persistence.sales_view import SalesView
from shopflow.redis_connection import redis_client
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.servers import Endpoints


async def _ensure_service_role(connection: AsyncConnection) -> None:
    """The service's role (SHOPFLOW_DATABASE_URL's user), where the servers do not have it
    (a testcontainers PostgreSQL; scripts/infra.sh creates it)."""
    service = make_url(Settings().database_url)
    exists = await connection.scalar(
        text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": service.username}
    )
    if not exists:
        await connection.execute(
            text(f"CREATE ROLE \"{service.username}\" LOGIN PASSWORD '{service.password}'")
        )


@asynccontextmanager
async def isolated_settings(endpoints: Endpoints, run: str) -> AsyncIterator[Settings]:
    """Settings for a shopflow of its own on `endpoints`, named after `run`: database
    `shopflow_test_<run>` (created here), topics behind the prefix `test-<run>.` with the
    contract's ACLs on them (provisioned here, as the Kafka admin, as `shopflow topics
    create` does), consumer groups `shopflow-test-<run>.*` (within the service's group
    prefix), Redis keys under `shopflow:test-<run>:top` in Redis database 1 (so that a
    test may FLUSHDB without touching a development service's view in database 0). On
    exit the topics and their ACLs are deleted, the database dropped and the Redis keys
    removed."""
    database = f"shopflow_test_{run}"
    admin = create_async_engine(endpoints.database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{database}"'))
        await _ensure_service_role(connection)
    owner_url = make_url(endpoints.database_url).set(database=database)
    # The service connects as its own role, as deployed: rows only, no schema rights.
    # The HTTP queries connect as the read-only role.
    defaults = Settings()
    service, reader = make_url(defaults.database_url), make_url(defaults.query_database_url)
    service_url = owner_url.set(username=service.username, password=service.password)
    reader_url = owner_url.set(username=reader.username, password=reader.password)
    settings = Settings(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        database_url=service_url.render_as_string(hide_password=False),
        query_database_url=reader_url.render_as_string(hide_password=False),
        migration_database_url=owner_url.render_as_string(hide_password=False),
        redis_url=make_url(endpoints.redis_url)
        .set(database="1")
        .render_as_string(hide_password=False),
        redis_key_prefix=f"shopflow:test-{run}:top",
        topic_prefix=f"test-{run}.",
        consumer_group=f"shopflow-test-{run}",
        batch_timeout_ms=20,
        # Kafka's default group.min.session.timeout.ms (a container's broker has it);
        # shopflow's own 2,000 needs the broker's minimum lowered (scripts/infra.sh does).
        session_timeout_ms=6000,
        # Small partition counts: a session creates its own topics and deletes them after.
        command_partitions=3,
        event_partitions=3,
        dead_letter_partitions=1,
    )
    admin_kafka = kafka_connection(settings, ADMIN)
    # The users once a session (cheap, and `make test` need not have run `topics create`).
    await provision(settings, admin_kafka, local_users=settings.kafka_username is None)
    try:
        yield settings
    finally:
        redis = redis_client(settings)
        try:
            await SalesView(redis, prefix=settings.redis_key_prefix).clear()
        finally:
            await redis.aclose()
        ours: list[str] = []
        kafka_admin = admin_kafka.admin()
        await kafka_admin.start()
        try:
            existing = set(await kafka_admin.list_topics())
            ours = [t for t in existing if t.startswith(settings.topic_prefix)]
            await kafka_admin.delete_topics(ours)
        finally:
            await kafka_admin.close()
        await revoke_topic_acls(admin_kafka, ours)
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


async def provisioned(settings: Settings) -> None:
    """The topics behind `settings.topic_prefix` and their ACLs, made as `shopflow topics
    create` makes them: as the Kafka admin (the service's principal may not)."""
    admin = kafka_connection(settings, ADMIN)
    await ensure_topics(settings, admin)
    await provision(settings, admin, local_users=False)


@asynccontextmanager
async def running(settings: Settings, **build: Any) -> AsyncIterator[Runtime]:
    """A runtime on `settings` (topics provisioned, schema migrated), consuming until the
    block ends; `build` goes to `Runtime.build` (a clock, a payment gateway...)."""
    runtime = Runtime.build(settings, **build)
    await provisioned(settings)
    await prepare(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Runtime]:
    """shopflow consuming, as `shopflow serve` (or `shopflow worker`) runs it, without the
    HTTP side: topics created, schema migrated, every command topic consumed, results
    and dead letters published.

    After it stops, the reconciliation check (`shopflow check`) runs over everything the
    session did, and a broken invariant raises AssertionError: a bug of shopflow's, shown
    where it happened rather than in a later session."""
    async with running(settings) as runtime:
        yield runtime
    violations = await find_violations(runtime.engine)
    await runtime.engine.dispose()
    assert not violations, describe(violations)
