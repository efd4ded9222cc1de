"""Where the test servers are: Kafka, PostgreSQL and Redis. `SHOPFLOW_TEST_INFRA` chooses:
`local`, servers someone already runs, named by the SHOPFLOW_* settings (in this
repository those of `scripts/infra.sh up`, which `make test` starts; nothing here
installs or starts a server); `testcontainers`, throwaway containers, refused for now
(they have no access control, which shopflow requires), saying what to do instead;
`auto` (the default), containers when Docker answers, else `local`. This repository's
tests use `local` (tests/conftest.py).
"""

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import make_url

from shopflow.settings import Settings

MODE_VARIABLE = "SHOPFLOW_TEST_INFRA"
MODES = ("auto", "local", "testcontainers")


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str  # a role allowed to create databases (the schema's owner)
    redis_url: str


def docker_available() -> bool:
    """Whether a Docker daemon answers (the CLI alone, or a socket nobody serves, is not
    enough for testcontainers)."""
    try:
        import docker
    except ImportError:  # testcontainers (and its docker client) not installed
        return False
    try:
        client = docker.from_env(timeout=3)
    except Exception:  # no socket, no permission, no DOCKER_HOST: no Docker
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@contextmanager
def find_servers() -> Iterator[Endpoints]:
    """The servers for a test session, as `SHOPFLOW_TEST_INFRA` says (see the module)."""
    mode = os.environ.get(MODE_VARIABLE, "auto") or "auto"
    if mode not in MODES:
        raise RuntimeError(f"{MODE_VARIABLE} must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        mode = "testcontainers" if docker_available() else "local"
    if mode == "testcontainers":
        with _containers() as endpoints:
            yield endpoints
    else:
        yield _local()


def _local() -> Endpoints:
    settings = Settings()
    endpoints = Endpoints(
        settings.kafka_bootstrap, settings.migration_database_url, settings.redis_url
    )
    _check_listening(endpoints)
    return endpoints


def _check_listening(endpoints: Endpoints) -> None:
    """Fail at once, saying what to do, when a server does not even accept a connection
    (rather than after each client's own retries, with its own message)."""
    kafka = endpoints.kafka_bootstrap.split(",")[0].strip()
    kafka_host, _, kafka_port = kafka.rpartition(":")
    database = make_url(endpoints.database_url)
    redis = make_url(endpoints.redis_url)
    servers = [
        ("Kafka", "SHOPFLOW_KAFKA_BOOTSTRAP", kafka_host, int(kafka_port or 9092)),
        (
            "PostgreSQL",
            "SHOPFLOW_MIGRATION_DATABASE_URL",
            database.host or "127.0.0.1",
            database.port or 5432,
        ),
        ("Redis", "SHOPFLOW_REDIS_URL", redis.host or "127.0.0.1", redis.port or 6379),
    ]
    for name, variable, host, port in servers:
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as error:
            raise RuntimeError(
                f"shopflow testing: {name} does not answer at {host}:{port} ({error}). "
                f"Without Docker ({MODE_VARIABLE} is 'local', or 'auto' found no Docker "
                f"daemon), the tests use servers you run: start them, or point {variable} "
                "(and the other SHOPFLOW_* settings) at them. In the shopflow repository, "
                "`bash scripts/infra.sh up` starts them."
            ) from error


@contextmanager
def _containers() -> Iterator[Endpoints]:
    # The containers testcontainers' modules start (Kafka, PostgreSQL, Redis) check no
    # credentials, and shopflow connects only to servers that do (CONTRACT.md, Access):
    # until this starts secured ones (as docker-compose.kafka.yml does), it says so.
    raise RuntimeError(
        f"shopflow testing: {MODE_VARIABLE}=testcontainers (or auto, with Docker) would "
        "start servers without access control, which shopflow does not connect to "
        "(CONTRACT.md, Access). Run secured servers (in a shopflow checkout: "
        "`scripts/infra.sh up`, or `make up-docker`) and set "
        f"{MODE_VARIABLE}=local, with SHOPFLOW_INFRA_DIR at their credentials."
    )
    yield  # a generator, so that it stays a context manager
