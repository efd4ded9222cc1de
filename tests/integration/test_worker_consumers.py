"""`shopflow worker --consumers commands` and `--consumers sales`, two real worker
processes on topics and groups of their own: the first applies the commands and publishes
their results, the second, the sales aggregator alone, counts the placed order into the
Redis view; each runs only its part (its own `shopflow_sales_applied_total`)."""

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from redis.asyncio import Redis

from shopflow.contracts.topics import Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.sales_view import SalesView
from shopflow.producers.client import ShopflowClient
from shopflow.redis_connection import redis_client
from shopflow.runtime import Consumers
from shopflow.settings import Settings
from tests.support import dashboard
from tests.support.ports import free_port
from tests.support.service import funded_user, isolated, new_product, placed_order
from tests.support.waiting import until
from tests.support.workers import start_worker_on_port, worker_ready, worker_stopped


@contextlib.asynccontextmanager
async def _worker(settings: Settings, consumers: Consumers) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    process = await start_worker_on_port(settings, port, options=["--consumers", consumers])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await worker_ready(http, process)
            yield http
    finally:
        assert await worker_stopped(process) == 0


async def _sales_applied(http: httpx.AsyncClient) -> float:
    return dashboard.total((await http.get("/metrics")).text, "shopflow_sales_applied_total")


async def test_the_commands_and_the_aggregator_in_workers_of_their_own(
    test_settings: Settings,
) -> None:
    settings = isolated(test_settings, "split")
    settings = settings.model_copy(
        update={"redis_key_prefix": f"shopflow:{settings.consumer_group}:top"}
    )
    redis: Redis = redis_client(settings)
    view = SalesView(redis, prefix=settings.redis_key_prefix)
    try:
        async with (
            _worker(settings, Consumers.COMMANDS) as commands,
            _worker(settings, Consumers.SALES) as sales,
            ShopflowClient(
                kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
            ) as client,
        ):
            user_id = await funded_user(client, 1_000)
            product_id = await new_product(client, price=10, stock=9)
            await placed_order(client, user_id, product_id, 3)

            async def counted() -> bool:
                return (product_id, 3) in await view.top(datetime.now(UTC))

            await until(counted, 30, "the sales worker counts the order in the view")
            assert await _sales_applied(sales) == 1
            assert await _sales_applied(commands) == 0
    finally:
        await view.clear()
        await redis.aclose()
