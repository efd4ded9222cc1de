"""How the testing kit finds its servers (`shopflow.testing.servers`): containers when
asked or when Docker answers, else the SHOPFLOW_* servers, and a plain answer when
those do not listen. No server is started here."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shopflow.testing import servers
from shopflow.testing.servers import Endpoints, find_servers

CONTAINERS = Endpoints("container:9092", "postgresql+asyncpg://c@container/db", "redis://c/0")


@pytest.fixture
def containers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for testcontainers: records that containers were asked for."""
    started: list[str] = []

    @contextmanager
    def fake() -> Iterator[Endpoints]:
        started.append("containers")
        yield CONTAINERS

    monkeypatch.setattr(servers, "_containers", fake)
    return started


@pytest.fixture
def listening(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port that accepts connections, named by every SHOPFLOW_* server setting."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("SHOPFLOW_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
        monkeypatch.setenv(
            "SHOPFLOW_MIGRATION_DATABASE_URL", f"postgresql+asyncpg://o:o@127.0.0.1:{port}/shop"
        )
        monkeypatch.setenv("SHOPFLOW_REDIS_URL", f"redis://127.0.0.1:{port}/0")
        yield port


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.mark.parametrize(("docker", "expected"), [(True, "containers"), (False, "local")])
def test_auto_takes_containers_only_when_docker_answers(
    monkeypatch: pytest.MonkeyPatch,
    containers: list[str],
    listening: int,
    docker: bool,
    expected: str,
) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "auto")
    monkeypatch.setattr(servers, "docker_available", lambda: docker)

    with find_servers() as found:
        pass

    if expected == "containers":
        assert (found, containers) == (CONTAINERS, ["containers"])
    else:
        assert containers == []
        assert found.kafka_bootstrap == f"127.0.0.1:{listening}"
        assert found.database_url == f"postgresql+asyncpg://o:o@127.0.0.1:{listening}/shop"


def test_local_never_starts_containers_even_with_docker(
    monkeypatch: pytest.MonkeyPatch, containers: list[str], listening: int
) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "local")
    monkeypatch.setattr(servers, "docker_available", lambda: True)

    with find_servers() as found:
        assert found.redis_url == f"redis://127.0.0.1:{listening}/0"
    assert containers == []


def test_testcontainers_is_taken_when_asked(
    monkeypatch: pytest.MonkeyPatch, containers: list[str]
) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "testcontainers")

    with find_servers() as found:
        assert found == CONTAINERS


def test_a_server_that_does_not_listen_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, listening: int
) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "local")
    monkeypatch.setenv("SHOPFLOW_REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")

    with (
        pytest.raises(RuntimeError, match=r"Redis does not answer .* SHOPFLOW_REDIS_URL"),
        find_servers(),
    ):
        pass


def test_an_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "docker")

    with (
        pytest.raises(RuntimeError, match="must be one of auto, local, testcontainers"),
        find_servers(),
    ):
        pass


def test_testcontainers_are_refused_saying_what_to_run_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPFLOW_TEST_INFRA", "testcontainers")

    with pytest.raises(RuntimeError) as raised, find_servers():
        pass

    assert "without access control" in str(raised.value)
    assert "SHOPFLOW_TEST_INFRA=local" in str(raised.value)
