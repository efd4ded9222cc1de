"""Fixtures shared by all tests, and the test tiers. Integration fixtures live in
tests/integration/conftest.py."""

import itertools
import os
import secrets
from pathlib import Path

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


# The tiers, as markers given by folder (pyproject.toml declares them): `make unit` runs
# `unit and not property` in seconds; `make test` runs every tier.
_ROOT = Path(__file__).resolve().parent.parent
_TIER_OF_FOLDER = {
    ("tests", "unit"): "unit",
    ("tests", "integration"): "integration",
    ("tests", "chaos"): "chaos",
    ("examples", "downstream"): "integration",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.resolve().relative_to(_ROOT).parts[:2]
        tier = _TIER_OF_FOLDER.get((folder[0], folder[1]) if len(folder) == 2 else ("", ""))
        if tier is not None:
            item.add_marker(tier)
