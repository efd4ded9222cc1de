"""Redis stopped under a stream of commands (issue: failure semantics, fault 7):
commands keep being applied and answered, top products are answered from PostgreSQL
meanwhile, and once Redis is back (empty: it keeps nothing on disk) the view is rebuilt
and answers the same as PostgreSQL.

The service under test gets a Redis server of its own (the `redis-server` that
scripts/infra.sh installs), so stopping it disturbs nothing else and works the same
whichever way the other servers were started."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import make_url

from shopflow.contracts.commands import ChargePoints, OrderLine, PlaceOrder
from shopflow.contracts.events import OrderPlaced, PointsCharged
from shopflow.contracts.topics import Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.sales_view import SalesView
from shopflow.producers.client import ShopflowClient
from shopflow.queries.read_model import ReadModel
from shopflow.queries.top_products import TopProducts
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import running
from tests.support.http_side import http_side
from tests.support.ids import new_command_id
from tests.support.ports import free_port
from tests.support.service import funded_user, isolated, new_product
from tests.support.waiting import eventually


def _url(settings: Settings, port: int) -> str:
    """The session's Redis URL (its user and password) on another port."""
    return make_url(settings.redis_url).set(port=port).render_as_string(hide_password=False)


@asynccontextmanager
async def _redis_server(url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A throwaway redis-server for `url`, answering when the block starts; stopped (if
    the block did not) when it ends. Closed like the real one: its default user is off,
    and the URL's user may use only keys under `shopflow:`."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/infra.sh up installs it)"
    parsed = make_url(url)
    assert parsed.port is not None
    server = await asyncio.create_subprocess_exec(
        *(binary, "--port", str(parsed.port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no"),
        *("--user", "default", "off"),
        *("--user", str(parsed.username), "on", f">{parsed.password}", "~shopflow:*", "+@all"),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        probe = Redis.from_url(url)
        async with asyncio.timeout(10):
            while True:
                try:
                    await probe.ping()
                    break
                except RedisConnectionError:  # not listening yet
                    await asyncio.sleep(0.05)
        await probe.aclose()
        yield server
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()


async def _order(client: ShopflowClient, user_id: int, product_id: int) -> None:
    event = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id("outage"),
            user_id=user_id,
            items=[OrderLine(product_id=product_id, quantity=2)],
        ),
        timeout=30,
    )
    assert isinstance(event, OrderPlaced), event


async def test_with_redis_stopped_commands_flow_and_top_products_come_from_postgresql(
    test_settings: Settings,
) -> None:
    port = free_port()
    settings = isolated(test_settings, "outage", redis_url=_url(test_settings, port))
    async with (
        _redis_server(settings.redis_url) as redis_server,
        running(settings) as runtime,
        ShopflowClient(
            kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
        ) as client,
    ):
        read_model = ReadModel(runtime.engine)
        top = TopProducts(runtime.sales_view, read_model, runtime.rebuild_sales_view, runtime.clock)
        user_id = await funded_user(client, 10**9)
        product_id = await new_product(client, price=1, stock=10_000)
        await _order(client, user_id, product_id)
        await runtime.redis.ping()  # the service holds a pooled connection to it

        redis_server.terminate()  # SIGTERM: Redis shuts down, keeping nothing
        await redis_server.wait()
        # Commands keep flowing: orders and a charge are applied and answered.
        for _ in range(5):
            await _order(client, user_id, product_id)
        charged = await client.send_and_wait(
            ChargePoints(command_id=new_command_id("outage"), user_id=user_id, amount=1),
            timeout=30,
        )
        assert isinstance(charged, PointsCharged)
        answer, source = await top.top()
        assert source == "postgresql"
        assert answer == await read_model.top_products(runtime.clock())

        async with _redis_server(settings.redis_url):  # back, empty

            async def redis_answers_as_postgresql() -> None:
                answer, source = await top.top()
                assert source == "redis"
                assert answer == await read_model.top_products(runtime.clock())

            # The view is missing: the first answer starts a rebuild (on the pooled
            # connection Redis closed: the client tries again on a new one); then
            # Redis answers, the orders applied meanwhile included.
            await eventually(redis_answers_as_postgresql, timeout=30)


async def test_after_a_redis_restart_the_services_first_command_goes_through(
    test_settings: Settings,
) -> None:
    port = free_port()
    settings = isolated(test_settings, "restart", redis_url=_url(test_settings, port))
    runtime = Runtime.build(settings, consume=False)
    try:
        async with _redis_server(settings.redis_url) as first:
            assert await runtime.redis.ping()  # a pooled connection, open
            first.terminate()
            await first.wait()
        async with _redis_server(settings.redis_url):
            # The pooled connection was closed by the server that stopped: the command is
            # tried again on a new one rather than failing.
            assert await runtime.redis.ping()
    finally:
        await runtime.redis.aclose()
        await runtime.engine.dispose()


async def test_serve_starts_without_redis_and_rebuilds_the_view_once_it_is_back(
    test_settings: Settings,
) -> None:
    """Its start checks the top-products view; with Redis away (here never started; a
    Sentinel set without a primary answers the same way) it used to stop there. It
    starts, answers top products from PostgreSQL, says Redis is down, and rebuilds the
    view once Redis comes."""
    port = free_port()
    settings = isolated(test_settings, "cold", redis_url=_url(test_settings, port))
    async with http_side(settings) as http:
        top = await http.get("/products/top")
        assert top.status_code == 200, top.text
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"].startswith("down")

        async with _redis_server(settings.redis_url):
            redis = Redis.from_url(settings.redis_url)
            view = SalesView(redis, prefix=settings.redis_key_prefix)

            async def rebuilt() -> None:
                assert (await http.get("/products/top")).status_code == 200
                assert await view.is_built()

            try:
                await eventually(rebuilt, timeout=30)
            finally:
                await redis.aclose()
