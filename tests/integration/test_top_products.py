"""The top-5 aggregator against the real Kafka and Redis (and PostgreSQL behind the
fallback): window, idempotence under redelivery, crash before commit, FLUSHALL and
rebuild, and a property test against a plain-Python computation."""

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from shopflow.app import prepare
from shopflow.contracts.commands import OrderLine, PlaceOrder
from shopflow.contracts.events import OrderPlaced, PlacedOrderLine
from shopflow.contracts.topics import ORDERS_EVENTS, Topics
from shopflow.domain.top_products import Sale, SaleKind, top_of
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.sales_view import SalesView
from shopflow.producers.client import ShopflowClient
from shopflow.queries.read_model import ReadModel
from shopflow.queries.top_products import FALLBACKS, TopProducts
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.ids import new_command_id, new_entity_id
from tests.support.scratch import admin_redis_url
from tests.support.service import funded_user, isolated, new_product
from tests.support.waiting import eventually

# Synthetic events live in a future week of their own: nothing else the tests do falls
# in their windows, and their buckets' expiry (absolute) lies ahead of the wall clock.
FUTURE = datetime(2041, 3, 10, 12, 0, tzinfo=UTC)


def _order_placed(occurred_at: datetime, *lines: tuple[int, int]) -> OrderPlaced:
    return OrderPlaced(
        event_id=uuid.uuid4(),
        command_id=new_command_id("synthetic"),
        occurred_at=occurred_at,
        user_id=new_entity_id(),
        order_id=new_entity_id(),
        items=[PlacedOrderLine(product_id=p, quantity=q, unit_price=1) for p, q in lines],
        total=sum(q for _, q in lines),
        balance=0,
    )


async def _publish(runtime: Runtime, event: OrderPlaced) -> None:
    """`event` on the runtime's order events, written as the service (no other principal
    may write a result topic)."""
    producer = runtime.kafka.producer()
    await producer.start()
    try:
        await producer.send_and_wait(
            runtime.topics.name(ORDERS_EVENTS),
            event.model_dump_json().encode(),
            key=str(event.user_id).encode(),
        )
    finally:
        await producer.stop()


@pytest.fixture
def uncached_view(service: Runtime) -> SalesView:
    """The service's view, read without the answer cache (tests read right after writes)."""
    return SalesView(service.redis, prefix=service.settings.redis_key_prefix, cache_ms=0)


async def test_answer_counts_only_the_last_72_hours_and_products_fall_out_as_time_moves(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    old, recent, newest = new_entity_id(), new_entity_id(), new_entity_id()
    await _publish(service, _order_placed(FUTURE - timedelta(hours=80), (old, 9)))
    await _publish(service, _order_placed(FUTURE - timedelta(hours=71), (recent, 5)))
    await _publish(service, _order_placed(FUTURE - timedelta(hours=1), (newest, 2)))

    async def at_future() -> None:
        assert await uncached_view.top(FUTURE) == [(recent, 5), (newest, 2)]

    await eventually(at_future)
    # Two hours later the 71-hour-old order is 73 hours old: out.
    assert await uncached_view.top(FUTURE + timedelta(hours=2)) == [(newest, 2)]
    # 80 hours earlier the oldest order was the only one in its window.
    assert await uncached_view.top(FUTURE - timedelta(hours=79)) == [(old, 9)]
    assert await uncached_view.top(FUTURE + timedelta(hours=75)) == []


async def test_same_order_placed_delivered_three_times_counts_once(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    product_id = new_entity_id()
    at = FUTURE + timedelta(days=10)
    event = _order_placed(at, (product_id, 4))
    sentinel = _order_placed(at, (new_entity_id(), 1))

    for _ in range(3):
        await _publish(service, event)
    await _publish(service, sentinel)

    async def counted() -> None:
        top = dict(await uncached_view.top(at))
        assert sentinel.items[0].product_id in top
        assert top[product_id] == 4

    await eventually(counted)


@pytest.fixture
async def crashing_aggregator(
    test_settings: Settings,
) -> AsyncIterator[tuple[ShopflowClient, Runtime, list[int]]]:
    """An isolated service whose aggregator fails once after applying a batch to Redis,
    before committing its offset (as a crash there would)."""
    settings = isolated(
        test_settings, "agg", redis_key_prefix=f"{test_settings.redis_key_prefix}.{new_entity_id()}"
    )
    crashes: list[int] = []

    async def crash_once() -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("simulated crash between applying and committing")

    runtime = Runtime.build(settings, after_apply=crash_once)
    await provisioned(settings)
    await prepare(settings)
    await runtime.start()
    try:
        async with ShopflowClient(
            kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
        ) as client:
            yield client, runtime, crashes
    finally:
        await runtime.sales_view.clear()
        await runtime.stop()


async def test_crash_between_applying_and_committing_counts_once(
    crashing_aggregator: tuple[ShopflowClient, Runtime, list[int]],
) -> None:
    _, runtime, crashes = crashing_aggregator
    view = SalesView(runtime.redis, prefix=runtime.settings.redis_key_prefix, cache_ms=0)
    product_id = new_entity_id()
    at = FUTURE + timedelta(days=20)

    await _publish(runtime, _order_placed(at, (product_id, 3)))

    async def counted_once() -> None:
        assert crashes == [1]
        assert await view.top(at) == [(product_id, 3)]

    await eventually(counted_once)
    await asyncio.sleep(1.5)  # the redelivery has happened; it must not have added more
    assert await view.top(at) == [(product_id, 3)]


async def test_placed_order_shows_in_top_products_within_two_seconds(
    client: ShopflowClient, service: Runtime
) -> None:
    top = TopProducts(
        service.sales_view, ReadModel(service.engine), service.rebuild_sales_view, service.clock
    )
    if not await service.sales_view.is_built():
        await service.rebuild_sales_view()
    user_id = await funded_user(client, 10**9)
    product_id = await new_product(client, price=1, stock=100_000)
    order = PlaceOrder(
        command_id=new_command_id("best-seller"),
        user_id=user_id,
        items=[OrderLine(product_id=product_id, quantity=1_000)],
    )

    await client.send_and_wait(order)
    placed_at = time.monotonic()

    while True:
        views, source = await top.top()
        if any(v.product_id == product_id for v in views):
            break
        assert time.monotonic() - placed_at < 2.0, "not in top products within 2 s"
        await asyncio.sleep(0.05)
    assert source == "redis"
    assert views[0].product_id == product_id
    assert views[0].units_sold == 1_000


async def test_after_redis_is_flushed_the_answer_comes_from_postgresql_then_redis_again(
    client: ShopflowClient, service: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    read_model = ReadModel(service.engine)
    redis_view = SalesView(service.redis, prefix=service.settings.redis_key_prefix, cache_ms=0)
    top = TopProducts(redis_view, read_model, service.rebuild_sales_view, service.clock)
    if not await redis_view.is_built():
        await service.rebuild_sales_view()
    user_id = await funded_user(client, 10**9)
    for quantity in (700, 600):
        product_id = await new_product(client, price=1, stock=10_000)
        await client.send_and_wait(
            PlaceOrder(
                command_id=new_command_id(),
                user_id=user_id,
                items=[OrderLine(product_id=product_id, quantity=quantity)],
            )
        )

    async def redis_caught_up() -> None:
        from_redis, source = await top.top()
        assert source == "redis"
        assert from_redis == await read_model.top_products(service.clock())

    await eventually(redis_caught_up)
    before, _ = await top.top()
    fallbacks_before = FALLBACKS.labels("view_missing")._value.get()

    # FLUSHALL, for the service's Redis database: as Redis's admin (the service's user
    # may not, CONTRACT.md, Access).
    admin = Redis.from_url(admin_redis_url(service.settings))
    try:
        await admin.flushdb()
    finally:
        await admin.aclose()
    with caplog.at_level(logging.WARNING, logger="shopflow.queries.top_products"):
        after_flush, source = await top.top()

    assert source == "postgresql"
    assert after_flush == before
    assert "computed from PostgreSQL: view_missing" in caplog.text
    assert FALLBACKS.labels("view_missing")._value.get() == fallbacks_before + 1
    await top.wait_for_rebuild()
    rebuilt, source = await top.top()
    assert source == "redis"
    assert rebuilt == before


async def test_redis_down_falls_back_to_postgresql(service: Runtime) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    read_model = ReadModel(service.engine)
    top = TopProducts(SalesView(unreachable), read_model, service.rebuild_sales_view, service.clock)
    try:
        answer, source = await top.top()
    finally:
        await unreachable.aclose()

    assert source == "postgresql"
    assert answer == await read_model.top_products(service.clock())


_line = st.tuples(st.integers(1, 8), st.integers(1, 5))
_sale = st.tuples(
    st.integers(-80 * 60, 60),  # minutes from the base
    st.lists(_line, min_size=1, max_size=3, unique_by=lambda line: line[0]),
    st.booleans(),  # delivered twice
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    history=st.lists(_sale, max_size=25),
    read_offsets=st.lists(st.integers(-90 * 60, 120), min_size=1, max_size=4),
)
async def test_redis_answer_equals_the_plain_python_computation(
    service: Runtime,
    history: list[tuple[int, list[tuple[int, int]], bool]],
    read_offsets: list[int],
) -> None:
    view = SalesView(service.redis, prefix=f"shopflow:prop-{secrets.token_hex(6)}", cache_ms=0)
    base = FUTURE + timedelta(days=40, seconds=secrets.randbelow(3600))
    sales: list[Sale] = []
    for minutes, lines, twice in history:
        at = base + timedelta(minutes=minutes, seconds=13)
        sale = Sale(SaleKind.PLACED, new_entity_id(), at, tuple(lines))
        sales += [sale, sale] if twice else [sale]
    try:
        await view.apply(sales, now=base - timedelta(hours=100))
        for offset in read_offsets:
            now = base + timedelta(minutes=offset)
            assert await view.top(now) == top_of(sales, now)
    finally:
        await view.clear()
