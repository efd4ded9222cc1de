"""shopflow's pytest fixtures, for its own tests and other teams' (registered by
`shopflow.testing.plugin`; what each gives: docs/testing.md). All are session-scoped:
one shopflow per test session, on a fresh database and topic prefix, removed at the end.
The async ones live in the session's event loop, so tests that use them run in it too
(`@pytest.mark.asyncio(loop_scope="session")`). Everything heavy is imported inside the
fixtures: pytest imports this module at every start, wherever shopflow is installed.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    import httpx

    from shopflow.producers.client import ShopflowClient
    from shopflow.runtime import Runtime
    from shopflow.settings import Settings
    from shopflow.testing.servers import Endpoints
    from shopflow.testing.tokens import TokenSigner

# The fixtures that live in the session's event loop.
_IN_SESSION_LOOP = frozenset(
    {"shopflow_settings", "shopflow_service", "shopflow_client", "shopflow_http"}
)
# How long `shopflow_http`'s own token lasts: longer than a session.
_HTTP_CLIENT_TOKEN_TTL_S = 24 * 3600


@pytest.hookimpl(tryfirst=True)  # before the fixtures are set up (a service started)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test that awaits shopflow's fixtures from another event loop, saying why,
    rather than with asyncio's "attached to a different loop" from deep in aiokafka."""
    if not _IN_SESSION_LOOP & set(getattr(item, "fixturenames", ())):
        return
    if not inspect.iscoroutinefunction(getattr(item, "obj", None)):
        return  # a sync test may read shopflow_settings; it awaits nothing
    marker = item.get_closest_marker("asyncio")
    scope = (marker.kwargs.get("loop_scope") if marker else None) or item.config.getini(
        "asyncio_default_test_loop_scope"
    )
    if scope != "session":
        pytest.fail(
            f"{item.nodeid} uses shopflow's fixtures, which live in the session's event "
            f"loop, but runs in a {scope or 'function'}-scoped one: mark it "
            '@pytest.mark.asyncio(loop_scope="session"), or set '
            'asyncio_default_test_loop_scope = "session" in the pytest configuration.',
            pytrace=False,
        )


@pytest.fixture(scope="session")
def shopflow_endpoints() -> Iterator[Endpoints]:
    """Kafka, PostgreSQL and Redis: the servers the SHOPFLOW_* settings name
    (SHOPFLOW_TEST_INFRA=local; testcontainers' unsecured containers are refused)."""
    from shopflow.testing.servers import find_servers

    with find_servers() as endpoints:
        yield endpoints


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shopflow_settings(shopflow_endpoints: Endpoints) -> AsyncIterator[Settings]:
    """The session's shopflow settings: its own database, topic prefix, consumer groups
    and Redis keys on those servers; all removed at the end of the session."""
    from shopflow.testing.session import isolated_settings

    async with isolated_settings(shopflow_endpoints, secrets.token_hex(3)) as settings:
        yield settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shopflow_service(shopflow_settings: Settings) -> AsyncIterator[Runtime]:
    """shopflow running as it really runs, consuming in this process; its invariants are
    checked (`shopflow check`) when the session ends."""
    from shopflow.testing.session import running_service

    async with running_service(shopflow_settings) as runtime:
        yield runtime


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shopflow_client(shopflow_service: Runtime) -> AsyncIterator[ShopflowClient]:
    """A started ShopflowClient on the service's topics: `await
    shopflow_client.send_and_wait(command)` returns the command's result event."""
    from shopflow.kafka_access import OPS, kafka_connection
    from shopflow.producers.client import ShopflowClient

    kafka = kafka_connection(shopflow_service.settings, OPS)
    async with ShopflowClient(kafka, topics=shopflow_service.topics) as client:
        yield client


@pytest.fixture(scope="session")
def shopflow_token(
    shopflow_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> TokenSigner:
    """Signs bearer tokens for `shopflow_http`: `shopflow_token(user=7)`,
    `shopflow_token(scopes=["shopflow:read"])`, `shopflow_token.headers(user=7)`. With the
    local servers' key when there is one, else a key made for the session."""
    from shopflow.testing.tokens import session_signer

    return session_signer(shopflow_settings, tmp_path_factory.mktemp("shopflow-token"))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shopflow_http(
    shopflow_service: Runtime, shopflow_token: TokenSigner
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx.AsyncClient on shopflow's HTTP queries (`GET /users/{id}/points`, ...),
    sending a service's token (shopflow:read, shopflow:metrics); a request's own
    `headers=shopflow_token.headers(user=...)` (or none: `{"Authorization": ""}`) replace
    it."""
    import httpx

    from shopflow.app import create_app
    from shopflow.queries.auth import SCOPE_METRICS, SCOPE_READ

    # The HTTP side as `shopflow serve --no-consume` runs it next to the consuming service:
    # its own runtime (connections), started and stopped by the app's lifespan, checking
    # tokens against the key `shopflow_token` signs with.
    settings = shopflow_token.settings_for(shopflow_service.settings)
    app = create_app(settings, consume=False, prepare_first=False)
    transport = httpx.ASGITransport(app=app)
    # Unless a request sends a token of its own: a service that reads (as a storefront's
    # back end would) and scrapes.
    scopes = [SCOPE_READ, SCOPE_METRICS]
    headers = shopflow_token.headers(scopes=scopes, ttl_s=_HTTP_CLIENT_TOKEN_TTL_S)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://shopflow", headers=headers
        ) as client,
    ):
        yield client
