"""Where the test servers are: one interface, two ways to get them.

- `SHOPFLOW_TEST_INFRA=local` (default; CI here): the servers that `scripts/infra.sh up`
  started (`make test` runs it), found through the SHOPFLOW_* variables or their defaults.
- `SHOPFLOW_TEST_INFRA=testcontainers` (machines with Docker): throwaway containers.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shopflow.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str  # a role allowed to create databases (the schema's owner)
    redis_url: str


@contextmanager
def test_endpoints() -> Iterator[Endpoints]:
    mode = os.environ.get("SHOPFLOW_TEST_INFRA", "local")
    if mode == "local":
        settings = Settings()
        yield Endpoints(
            settings.kafka_bootstrap, settings.migration_database_url, settings.redis_url
        )
    elif mode == "testcontainers":
        with _containers() as endpoints:
            yield endpoints
    else:
        raise RuntimeError(f"SHOPFLOW_TEST_INFRA must be 'local' or 'testcontainers', not {mode!r}")


@contextmanager
def _containers() -> Iterator[Endpoints]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        PostgresContainer("postgres:15", driver="asyncpg") as postgres,
        RedisContainer("redis:7") as redis,
    ):
        redis_host = redis.get_container_host_ip()
        redis_port = redis.get_exposed_port(6379)
        yield Endpoints(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            database_url=postgres.get_connection_url(),
            redis_url=f"redis://{redis_host}:{redis_port}/0",
        )
