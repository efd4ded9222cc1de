"""Fixtures shared by all tests, and the test tiers. Integration fixtures live in
tests/integration/conftest.py; the helpers tests import live in tests/support."""

import os
from pathlib import Path

import pytest


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
