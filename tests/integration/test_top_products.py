"""The top-5 aggregator against the real Kafka and Redis (and PostgreSQL behind the
fallback): window, idempotence under redelivery, crash before commit, cancellations
(out of their placed time's buckets, once, in either order), FLUSHALL and rebuild, and
a property test against the plain-Python computation (`domain.top_products.top_of`)."""

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
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.app import prepare
from shopflow.consumers.aggregator import UNREADABLE_EVENTS
from shopflow.contracts.commands import OrderLine, PlaceOrder
from shopflow.contracts.events import (
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderRejected,
    OrderShipped,
    OrderShipRejected,
    PlacedOrderLine,
    RejectionReason,
)
from shopflow.contracts.topics import ORDERS_EVENTS, Topics
from shopflow.domain.top_products import Sale, SaleKind, top_of
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.sales_rebuild import rebuild_sales_view
from shopflow.persistence.sales_view import SalesView, ViewState
from shopflow.producers.client import ShopflowClient
from shopflow.queries.read_model import ReadModel
from shopflow.queries.top_products import FALLBACKS, TopProducts
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.ids import new_command_id, new_entity_id
from tests.support.scratch import admin_redis_url
from tests.support.seeding import seed_cancel, seed_order, seed_product, seed_user
from tests.support.service import funded_user, isolated, new_product
from tests.support.waiting import eventually

# Synthetic events live in a future week of their own: nothing else the tests do falls
# in their windows, and their buckets' expiry (absolute) lies ahead of the wall clock.
# Each test on the service's view reads at a day of its own after it, at least 4 days
# from the others' (the window is 72 hours).
FUTURE = datetime(2041, 3, 10, 12, 0, tzinfo=UTC)


def _order_placed(
    occurred_at: datetime, *lines: tuple[int, int], user_id: int | None = None
) -> OrderPlaced:
    return OrderPlaced(
        event_id=uuid.uuid4(),
        command_id=new_command_id("synthetic"),
        occurred_at=occurred_at,
        user_id=user_id or new_entity_id(),
        order_id=new_entity_id(),
        items=[PlacedOrderLine(product_id=p, quantity=q, unit_price=1) for p, q in lines],
        total=sum(q for _, q in lines),
        balance=0,
    )


def _order_cancelled(placed: OrderPlaced, occurred_at: datetime) -> OrderCancelled:
    """What cancelling `placed` at `occurred_at` publishes (its placed_at: the
    OrderPlaced's occurred_at)."""
    return OrderCancelled(
        event_id=uuid.uuid4(),
        command_id=new_command_id("synthetic-cancel"),
        occurred_at=occurred_at,
        user_id=placed.user_id,
        order_id=placed.order_id,
        items=placed.items,
        refunded=placed.total,
        balance=placed.total,
        placed_at=placed.occurred_at,
    )


OrderEvent = (
    OrderPlaced
    | OrderRejected
    | OrderCancelled
    | OrderCancelRejected
    | OrderShipped
    | OrderShipRejected
)


async def _publish(runtime: Runtime, *events: OrderEvent) -> None:
    """`events`, in order, on the runtime's order events, written as the service (no other
    principal may write a result topic). One user's events land on one partition, in
    this order."""
    producer = runtime.kafka.producer()
    await producer.start()
    try:
        for event in events:
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
    return SalesView(service.redis, prefix=service.settings.redis_key_prefix)


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
    view = SalesView(runtime.redis, prefix=runtime.settings.redis_key_prefix)
    product_id = new_entity_id()
    at = FUTURE + timedelta(days=20)

    await _publish(runtime, _order_placed(at, (product_id, 3)))

    async def counted_once() -> None:
        assert crashes == [1]
        assert await view.top(at) == [(product_id, 3)]

    await eventually(counted_once)
    await asyncio.sleep(1.5)  # the redelivery has happened; it must not have added more
    assert await view.top(at) == [(product_id, 3)]


async def test_a_cancellation_takes_the_units_out_of_the_buckets_its_order_was_placed_in(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    kept, taken_back = new_entity_id(), new_entity_id()
    now = FUTURE + timedelta(days=60)
    placed_at = now - timedelta(hours=5, minutes=17)
    order = _order_placed(placed_at, (kept, 3), (taken_back, 9))
    other = _order_placed(placed_at, (kept, 2), user_id=order.user_id)  # same minute, stays

    await _publish(service, order, other)

    async def counted() -> None:
        assert await uncached_view.top(now) == [(taken_back, 9), (kept, 5)]

    await eventually(counted)
    await _publish(service, _order_cancelled(order, occurred_at=now))

    async def taken_out() -> None:
        # Out of the placed hour's bucket (read whole in this window) ...
        assert await uncached_view.top(now) == [(kept, 2)]

    await eventually(taken_out)
    # ... and of its minute's bucket (read in a window that starts, or one that ends,
    # with that minute), not of the buckets of the cancellation's time.
    assert await uncached_view.top(placed_at + timedelta(hours=72)) == [(kept, 2)]
    assert await uncached_view.top(placed_at + timedelta(minutes=1)) == [(kept, 2)]


async def test_a_cancellation_delivered_twice_takes_the_units_out_once(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    product_id, sentinel_product = new_entity_id(), new_entity_id()
    at = FUTURE + timedelta(days=64)
    first = _order_placed(at, (product_id, 5))
    second = _order_placed(at, (product_id, 4), user_id=first.user_id)
    cancel = _order_cancelled(first, occurred_at=at + timedelta(hours=1))
    # After the rest, on the same partition: once it counts, so has everything before it.
    sentinel = _order_placed(at, (sentinel_product, 1), user_id=first.user_id)

    await _publish(service, first, second, cancel, cancel, sentinel)

    async def once() -> None:
        top = dict(await uncached_view.top(at))
        assert sentinel_product in top
        assert top.get(product_id) == 4  # twice would leave nothing (9 - 5 - 5, floored)

    await eventually(once)


async def test_a_cancellation_delivered_before_its_placement_leaves_nothing_counted(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    product_id, other_product = new_entity_id(), new_entity_id()
    at = FUTURE + timedelta(days=68)
    earlier = _order_placed(at, (product_id, 3))
    order = _order_placed(at, (product_id, 6), (other_product, 2), user_id=earlier.user_id)
    later = _order_placed(at, (other_product, 1), user_id=earlier.user_id)

    # As a rebuild or another partition can deliver them: the cancellation first. It
    # takes nothing from the earlier order, and the placement after it adds nothing.
    cancel = _order_cancelled(order, at + timedelta(hours=2))
    await _publish(service, earlier, cancel, order, later)

    async def nothing_of_it() -> None:
        assert await uncached_view.top(at) == [(product_id, 3), (other_product, 1)]

    await eventually(nothing_of_it)


async def test_the_other_order_events_are_skipped_without_stalling_the_view(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    at = FUTURE + timedelta(days=76)
    order = _order_placed(at, (new_entity_id(), 2))
    user_id, order_id = order.user_id, order.order_id
    command_id = new_command_id("synthetic-other")
    unreadable = UNREADABLE_EVENTS._value.get()

    await _publish(
        service,
        OrderRejected(
            event_id=uuid.uuid4(),
            command_id=command_id,
            occurred_at=at,
            user_id=user_id,
            reason=RejectionReason.OUT_OF_STOCK,
        ),
        OrderShipped(
            event_id=uuid.uuid4(),
            command_id=command_id,
            occurred_at=at,
            user_id=user_id,
            order_id=order_id,
        ),
        OrderShipRejected(
            event_id=uuid.uuid4(),
            command_id=command_id,
            occurred_at=at,
            user_id=user_id,
            order_id=order_id,
            reason=RejectionReason.ORDER_CANCELLED,
        ),
        OrderCancelRejected(
            event_id=uuid.uuid4(),
            command_id=command_id,
            occurred_at=at,
            user_id=user_id,
            order_id=order_id,
            reason=RejectionReason.ORDER_SHIPPED,
        ),
        order,  # behind them on the same partition
    )

    async def counted() -> None:
        assert await uncached_view.top(at) == [(order.items[0].product_id, 2)]

    await eventually(counted)
    assert UNREADABLE_EVENTS._value.get() == unreadable


async def test_placed_order_shows_in_top_products_within_two_seconds(
    client: ShopflowClient, service: Runtime
) -> None:
    # As serve holds it (SHOPFLOW_TOP_CACHE_MS), with an answer held from before the
    # order: the worst case.
    top = TopProducts(
        service.sales_view,
        ReadModel(service.engine),
        service.rebuild_sales_view,
        service.clock,
        cache_ms=service.settings.top_cache_ms,
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
    await top.top()

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
    redis_view = SalesView(service.redis, prefix=service.settings.redis_key_prefix)
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


async def _cancel_in_postgresql(engine: AsyncEngine, order_id: int, at: datetime) -> None:
    """Cancel an order as CancelOrder does, and publish nothing (so only PostgreSQL
    knows)."""
    async with engine.begin() as connection:
        await seed_cancel(connection, order_id, at)


async def test_after_a_flush_postgresql_and_the_rebuilt_view_leave_a_cancelled_order_out(
    client: ShopflowClient, service: Runtime, uncached_view: SalesView
) -> None:
    read_model = ReadModel(service.engine)
    top = TopProducts(uncached_view, read_model, service.rebuild_sales_view, service.clock)
    if not await uncached_view.is_built():
        await service.rebuild_sales_view()
    user_id = await funded_user(client, 10**9)
    product_id = await new_product(client, price=1, stock=10_000)
    placed = []
    for quantity in (1_000, 999):  # near the top, so that it shows in the answer
        event = await client.send_and_wait(
            PlaceOrder(
                command_id=new_command_id(),
                user_id=user_id,
                items=[OrderLine(product_id=product_id, quantity=quantity)],
            )
        )
        assert isinstance(event, OrderPlaced)
        placed.append(event)

    async def both_counted() -> None:
        answer, source = await top.top()
        assert source == "redis"
        assert (product_id, 1_999) in [(p.product_id, p.units_sold) for p in answer]

    await eventually(both_counted)
    cancelled = placed[0]
    await _cancel_in_postgresql(service.engine, cancelled.order_id, service.clock())
    admin = Redis.from_url(admin_redis_url(service.settings))
    try:
        await admin.flushdb()
    finally:
        await admin.aclose()

    from_postgresql, source = await top.top()
    assert source == "postgresql"
    assert (product_id, 999) in [(p.product_id, p.units_sold) for p in from_postgresql]
    await top.wait_for_rebuild()
    rebuilt, source = await top.top()
    assert source == "redis"
    assert rebuilt == await read_model.top_products(service.clock())
    assert (product_id, 999) in [(p.product_id, p.units_sold) for p in rebuilt]

    # Its OrderPlaced redelivered after the rebuild: the rebuild's cancellation marker
    # keeps it out. The sentinel, on the same partition behind it, shows it was applied.
    sentinel_product, at = new_entity_id(), FUTURE + timedelta(days=72)
    sentinel = _order_placed(at, (sentinel_product, 1), user_id=user_id)
    await _publish(service, cancelled, sentinel)

    async def sentinel_counted() -> None:
        assert await uncached_view.top(at) == [(sentinel_product, 1)]

    await eventually(sentinel_counted)
    after_redelivery, source = await top.top()
    assert source == "redis"
    assert after_redelivery == rebuilt


async def test_the_fallback_and_a_rebuild_count_no_cancelled_order(
    service: Runtime, engine: AsyncEngine
) -> None:
    # A far-future week of its own in PostgreSQL, and a view of its own in Redis.
    now = datetime(2040, 1, 1, 12, tzinfo=UTC) + timedelta(weeks=new_entity_id() % 250_000)
    view = SalesView(service.redis, prefix=f"shopflow:cancel-{secrets.token_hex(6)}")
    async with engine.begin() as connection:
        user_id = await seed_user(connection, balance=10**6)
        mug, pot, old = [await seed_product(connection, name=n) for n in ("Mug", "Pot", "Old")]
        mugs = await seed_order(
            connection, user_id, [(mug, 5, 1), (pot, 1, 1)], now - timedelta(hours=3)
        )
        await seed_order(connection, user_id, [(mug, 2, 1)], now - timedelta(hours=2))
        pots = await seed_order(connection, user_id, [(pot, 3, 1)], now - timedelta(hours=70))
        await seed_order(connection, user_id, [(old, 50, 1)], now - timedelta(hours=80))
    await _cancel_in_postgresql(engine, mugs, now - timedelta(hours=1))
    expected = [(pot, 3), (mug, 2)]  # the cancelled order's 5 mugs and 1 pot left out

    fallback = await ReadModel(engine).top_products(now)
    assert [(p.product_id, p.units_sold) for p in fallback] == expected
    try:
        assert await rebuild_sales_view(view, engine, now)
        assert await view.top(now) == expected

        # After the rebuild: the cancelled order's OrderPlaced, redelivered late, counts
        # nothing; another order's cancellation takes its units out.
        pots_placed_at = now - timedelta(hours=70)
        await view.apply(
            [Sale(SaleKind.PLACED, mugs, now - timedelta(hours=3), ((mug, 5), (pot, 1)))], now=now
        )
        await view.apply([Sale(SaleKind.CANCELLED, pots, pots_placed_at, ((pot, 3),))], now=now)
        assert await view.top(now) == [(mug, 2)]
    finally:
        await view.clear()


async def test_a_view_built_on_another_primary_is_stale_and_rebuilt_to_postgresql(
    service: Runtime, engine: AsyncEngine
) -> None:
    """A Sentinel failover promotes a replica, which may lack the last sales the old
    primary acknowledged (replication is asynchronous): the view's marker names the old
    primary, so the view reads as stale; the query answers from PostgreSQL and rebuilds
    it, and the rebuilt view is PostgreSQL's, the lost sale included."""
    now = datetime(2040, 1, 1, 12, tzinfo=UTC) + timedelta(weeks=new_entity_id() % 250_000)
    view = SalesView(service.redis, prefix=f"shopflow:stale-{secrets.token_hex(6)}")
    read_model = ReadModel(engine)
    async with engine.begin() as connection:
        user_id = await seed_user(connection, balance=10**6)
        mug, pot = [await seed_product(connection, name=n) for n in ("Mug", "Pot")]
        await seed_order(connection, user_id, [(mug, 5, 1)], now - timedelta(hours=3))
    try:
        assert await rebuild_sales_view(view, engine, now)
        assert await view.state() is ViewState.BUILT
        # An order whose sale reached the old primary only, and the marker as the old
        # primary's history left it on the promoted replica: another replication id.
        async with engine.begin() as connection:
            await seed_order(connection, user_id, [(pot, 7, 1)], now - timedelta(hours=1))
        await view.mark_built(now, origin="0" * 40)
        assert await view.state() is ViewState.STALE
        assert await view.top(now) == [(mug, 5)]  # the lost sale

        top = TopProducts(
            view, read_model, lambda at: rebuild_sales_view(view, engine, at), lambda: now
        )
        stale_before = FALLBACKS.labels("view_stale")._value.get()
        answer, source = await top.top()
        assert source == "postgresql"
        assert [(p.product_id, p.units_sold) for p in answer] == [(pot, 7), (mug, 5)]
        assert FALLBACKS.labels("view_stale")._value.get() == stale_before + 1
        await top.wait_for_rebuild()
        assert await view.state() is ViewState.BUILT
        rebuilt, source = await top.top()
        assert source == "redis"
        assert rebuilt == answer
    finally:
        await view.clear()


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
_order = st.tuples(
    # Minutes from the base, when it was placed: anywhere in the reads' windows, or in
    # the last 90 minutes, where orders share buckets (and a cancellation placed in one
    # would take from the others what is not its own).
    st.one_of(st.integers(-80 * 60, 60), st.integers(-90, 0)),
    st.lists(_line, min_size=1, max_size=3, unique_by=lambda line: line[0]),
    st.booleans(),  # cancelled later
)


def _placements_first(committed: list[Sale]) -> list[Sale]:
    """`committed` with each order's cancellation swapped with its placement when it came
    first: PostgreSQL commits an order's cancellation after its placement."""
    result = list(committed)
    first_at: dict[int, int] = {}
    for i, sale in enumerate(result):
        j = first_at.setdefault(sale.order_id, i)
        if j != i and result[j].kind is SaleKind.CANCELLED:
            result[i], result[j] = result[j], result[i]
    return result


def _replayed(snapshot: list[Sale]) -> list[Sale]:
    """What `rebuild_sales_view` replays of a snapshot of PostgreSQL: each order once, by
    order id, as a cancellation when it is cancelled, else as a placement."""
    cancelled = {s.order_id for s in snapshot if s.kind is SaleKind.CANCELLED}
    return sorted(
        (
            Sale(
                SaleKind.CANCELLED if s.order_id in cancelled else SaleKind.PLACED,
                s.order_id,
                s.placed_at,
                s.lines,
            )
            for s in snapshot
            if s.kind is SaleKind.PLACED
        ),
        key=lambda s: s.order_id,
    )


def _batches(data: st.DataObject, sales: list[Sale], label: str) -> list[list[Sale]]:
    """`sales` cut into batches of 1 to 5, as a consumer's polls or a rebuild's chunks."""
    batches = []
    while sales:
        size = data.draw(st.integers(1, 5), label=label)
        batches.append(sales[:size])
        sales = sales[size:]
    return batches


async def _assert_no_score_at_or_below_zero(redis: Redis, prefix: str) -> None:
    """No bucket of the view holds a product at 0 or less (one at 0 is removed)."""
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        if not key.endswith(b":seen") and b":built" not in key:
            assert await redis.zrangebyscore(key, "-inf", 0, withscores=True) == [], key


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    history=st.lists(_order, max_size=15),
    data=st.data(),
    read_offsets=st.lists(st.integers(-90 * 60, 120), min_size=1, max_size=4),
)
async def test_redis_answer_equals_the_plain_python_computation(
    service: Runtime,
    history: list[tuple[int, list[tuple[int, int]], bool]],
    data: st.DataObject,
    read_offsets: list[int],
) -> None:
    """Orders placed and some cancelled; their events delivered in any order (a
    cancellation before its placement too), some more than once; a rebuild from a
    snapshot of PostgreSQL in the middle, with deliveries going on during its replay. The
    view answers as the reference computation over what was delivered, before the
    rebuild and after it, and never holds a score at or below zero."""
    prefix = f"shopflow:prop-{secrets.token_hex(6)}"
    view = SalesView(service.redis, prefix=prefix)
    base = FUTURE + timedelta(days=40, seconds=secrets.randbelow(3600))
    facts: list[Sale] = []
    for minutes, lines, cancelled in history:
        order_id, at = new_entity_id(), base + timedelta(minutes=minutes, seconds=13)
        facts.append(Sale(SaleKind.PLACED, order_id, at, tuple(lines)))
        if cancelled:
            facts.append(Sale(SaleKind.CANCELLED, order_id, at, tuple(lines)))
    committed = _placements_first(data.draw(st.permutations(facts), label="committed"))
    cut = data.draw(st.integers(0, len(committed)), label="snapshot")
    snapshot, later = committed[:cut], committed[cut:]
    # Before the rebuild's clear, only what was committed before its snapshot can have
    # been delivered (a result is published after its commit); after it, everything
    # committed later, and redeliveries of anything, in any order.
    before = data.draw(st.lists(st.sampled_from(snapshot)) if snapshot else st.just([]))
    again = data.draw(st.lists(st.sampled_from(facts)) if facts else st.just([]))
    after = _batches(data, data.draw(st.permutations(later + again), label="after"), "polls")
    replay = _batches(data, _replayed(snapshot), "chunks")
    apply_at = base - timedelta(hours=100)
    try:
        for batch in _batches(data, before, "polls"):
            await view.apply(batch, now=apply_at)
        for offset in read_offsets:
            now = base + timedelta(minutes=offset)
            assert await view.top(now) == top_of(before, now)
        await _assert_no_score_at_or_below_zero(service.redis, prefix)

        await view.clear()
        while after or replay:
            source = replay if not after or (replay and data.draw(st.booleans())) else after
            await view.apply(source.pop(0), now=apply_at)
        for offset in read_offsets:
            now = base + timedelta(minutes=offset)
            assert await view.top(now) == top_of(facts, now)
        await _assert_no_score_at_or_below_zero(service.redis, prefix)
    finally:
        await view.clear()
