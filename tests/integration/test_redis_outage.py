"""Redis stopped under a stream of commands (issue: failure semantics, fault 7), on the
servers of scripts/infra.sh: commands keep being applied and answered, top products are
answered from PostgreSQL meanwhile, and once Redis is back (empty: it keeps nothing on
disk) the view is rebuilt and answers the same as PostgreSQL."""

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.commands import ChargePoints, OrderLine, PlaceOrder
from contracts.events import OrderPlaced, PointsCharged
from contracts.topics import Topics
from producers.client import ShopflowClient
from queries.read_model import ReadModel
from queries.top_products import TopProducts
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from tests.conftest import new_command_id
from tests.integration.helpers import funded_user, isolated, new_product, running
from tests.integration.test_top_products import _eventually

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.environ.get("SHOPFLOW_TEST_INFRA", "local") != "local",
    reason="stops and restarts the Redis of scripts/infra.sh",
)


def _infra(*args: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "infra.sh"), *args], check=True, timeout=120)


def _stop_redis(redis_url: str) -> None:
    port = redis_url.split(":")[-1].split("/")[0]
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown", "nosave"],
        check=False,  # the connection drops as it shuts down
        timeout=30,
        capture_output=True,
    )


async def _order(client: ShopflowClient, user_id: int, product_id: int) -> OrderPlaced:
    event = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id("outage"),
            user_id=user_id,
            items=[OrderLine(product_id=product_id, quantity=2)],
        ),
        timeout=30,
    )
    assert isinstance(event, OrderPlaced), event
    return event


async def test_with_redis_stopped_commands_flow_and_top_products_come_from_postgresql(
    test_settings: Settings, service: Runtime, engine: AsyncEngine
) -> None:
    settings = isolated(test_settings, "outage", redis_key_prefix=f"{test_settings.topic_prefix}o")
    async with (
        running(settings) as runtime,
        ShopflowClient(settings.kafka_bootstrap, topics=Topics(settings.topic_prefix)) as client,
    ):
        read_model = ReadModel(runtime.engine)
        top = TopProducts(runtime.sales_view, read_model, runtime.rebuild_sales_view, runtime.clock)
        user_id = await funded_user(client, 10**9)
        product_id = await new_product(client, price=1, stock=10_000)
        await _order(client, user_id, product_id)

        await service.redis.ping()  # the session service holds a pooled connection
        _stop_redis(settings.redis_url)
        try:
            # Commands keep flowing: charges and orders are applied and answered.
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
        finally:
            _infra("up")  # Redis back, empty

        async def redis_answers_as_postgresql() -> None:
            answer, source = await top.top()
            assert source == "redis"
            assert answer == await read_model.top_products(runtime.clock())

        # The view is missing: the first answer starts a rebuild; then Redis answers,
        # the orders applied meanwhile included.
        await _eventually(redis_answers_as_postgresql, timeout=30)

    # The session's own view went with Redis: rebuilt for the tests after this one. Its
    # client's pooled connections were closed by the shutdown: the first command on one
    # is tried again on a new connection.
    await service.rebuild_sales_view()
