"""Fixtures shared by all tests. Integration fixtures live in tests/integration/conftest.py."""

import itertools
import os
import secrets

import pytest

_counter = itertools.count(1)
_RUN = secrets.token_hex(3)


def new_command_id(label: str = "cmd") -> str:
    """A command_id no other test (or earlier run) uses."""
    return f"{label}-{_RUN}-{next(_counter)}-{secrets.token_hex(4)}"


def new_entity_id() -> int:
    """A random positive 63-bit id: tests never collide, so nothing needs cleaning."""
    return secrets.randbelow(2**62) + 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# This repository's servers are those of `scripts/infra.sh up` (`make test` starts them),
# even on a machine with Docker, where shopflow.testing.servers would otherwise take
# containers; SHOPFLOW_TEST_INFRA=testcontainers asks for those.
os.environ.setdefault("SHOPFLOW_TEST_INFRA", "local")
