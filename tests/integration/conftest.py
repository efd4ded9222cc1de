"""The real servers, shared by the whole session: one fresh database, one set of topics
behind a per-run prefix, one running service. Tests use their own ids, so nothing is
cleaned between them and nothing is restarted.

These are the pytest plugin's fixtures (`shopflow.testing.fixtures`, the ones other teams
use), under this suite's names: one implementation, and one service per session, which
examples/downstream shares when both run."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopflow.producers.client import ShopflowClient
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.servers import Endpoints


@pytest.fixture(scope="session")
def endpoints(shopflow_endpoints: Endpoints) -> Endpoints:
    return shopflow_endpoints


@pytest.fixture(scope="session")
def test_settings(shopflow_settings: Settings) -> Settings:
    return shopflow_settings


@pytest.fixture(scope="session")
def service(shopflow_service: Runtime) -> Runtime:
    """The service, consuming, as `shopflow serve` runs it (without the HTTP server).

    When the session ends, the reconciliation check runs over everything the tests did
    (as `shopflow check` does): any broken invariant fails the run."""
    return shopflow_service


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
def client(shopflow_client: ShopflowClient) -> ShopflowClient:
    return shopflow_client
