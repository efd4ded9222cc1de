"""The pytest plugin (entry point `pytest11`, so pytest loads it wherever shopflow is
installed): it registers shopflow's fixtures (`shopflow.testing.fixtures`).

The fixtures are async, through pytest-asyncio, which shopflow's `testing` extra brings.
Where pytest-asyncio is missing (shopflow installed for its client, next to tests that
use anyio's plugin or none) the plugin registers nothing and says so in pytest's header,
rather than failing every pytest run of that environment at start.
"""

import importlib.util

import pytest

_FIXTURES = "shopflow.testing.fixtures"


def _usable() -> bool:
    return importlib.util.find_spec("pytest_asyncio") is not None


def pytest_configure(config: pytest.Config) -> None:
    if not _usable() or config.pluginmanager.has_plugin(_FIXTURES):
        return
    from shopflow.testing import fixtures

    config.pluginmanager.register(fixtures, _FIXTURES)


def pytest_report_header(config: pytest.Config) -> str | None:
    if _usable():
        return None
    return "shopflow: no fixtures (pytest-asyncio is missing: pip install 'shopflow[testing]')"
