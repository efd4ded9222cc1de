"""Benchmark: how fast the aggregator applies OrderPlaced events, and how long
GET /products/top takes.

    .venv/bin/python -m tests.bench.top_products                  # 50,000 events
    .venv/bin/python -m tests.bench.top_products --events 100000 --requests 5000

Uses the servers of `make up`, on topics and a Redis key prefix of its own (removed
afterwards). The events (3 lines each, 200 products, spread over the last 72 hours)
are produced first; then an in-process service starts and the clock runs from its
first applied event to the last. Latency is measured through the HTTP app (ASGI,
in-process, no network) with the default 1 s answer cache and with no cache.
"""

import argparse
import asyncio
import random
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from consumers.aggregator import SALES_APPLIED
from contracts.events import OrderPlaced, PlacedOrderLine
from contracts.topics import ORDERS_EVENTS
from domain.top_products import Sale, top_of
from persistence.sales_view import SalesView
from queries.http import create_http_app
from queries.read_model import ReadModel
from queries.top_products import TopProducts
from shopflow.app import prepare
from shopflow.runtime import Runtime
from shopflow.settings import Settings


def _applied() -> float:
    new = SALES_APPLIED.labels("new")._value.get()
    return float(new + SALES_APPLIED.labels("duplicate")._value.get())


async def _latencies(client: httpx.AsyncClient, requests: int) -> tuple[float, float]:
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = await client.get("/products/top")
        timings.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
    quantiles = statistics.quantiles(timings, n=100)
    return quantiles[49], quantiles[98]


async def run(events: int, requests: int) -> None:
    run_id = secrets.token_hex(3)
    settings = Settings().model_copy(
        update={
            "topic_prefix": f"bench-{run_id}.",
            "consumer_group": f"bench-{run_id}",
            "redis_key_prefix": f"bench-{run_id}:top",
        }
    )
    runtime = Runtime.build(settings)
    await prepare(settings, runtime)
    now = datetime.now(UTC)
    rng = random.Random(7)
    sent = []
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    pending = []
    for i in range(events):
        products = rng.sample(range(1, 201), 3)
        event = OrderPlaced(
            event_id=uuid.uuid4(),
            command_id=f"bench-{run_id}-{i}",
            occurred_at=now - timedelta(seconds=rng.randrange(72 * 3600 - 600)),
            user_id=rng.randrange(1, 10_000),
            order_id=i + 1,
            items=[
                PlacedOrderLine(product_id=p, quantity=rng.randint(1, 5), unit_price=1)
                for p in products
            ],
            total=0,
            balance=0,
        )
        sent.append(event)
        pending.append(
            await producer.send(
                runtime.topics.name(ORDERS_EVENTS),
                event.model_dump_json().encode(),
                key=str(event.user_id).encode(),
            )
        )
    await asyncio.gather(*pending)
    await producer.stop()
    print(f"produced {events} OrderPlaced events")

    before = _applied()
    await runtime.start()
    await runtime.sales_view.mark_built(now)  # the view is fed by events only here
    first = last = 0.0
    async with asyncio.timeout(600):
        while _applied() - before < events:
            await asyncio.sleep(0.02)
            if not first and _applied() > before:
                first = time.perf_counter()
        last = time.perf_counter()
    print(
        f"applied {events} events in {last - first:.2f} s: {events / (last - first):,.0f} events/s"
    )

    expected = top_of(
        [
            Sale(str(e.event_id), e.occurred_at, tuple((i.product_id, i.quantity) for i in e.items))
            for e in sent
        ],
        datetime.now(UTC),
    )
    uncached = SalesView(runtime.redis, prefix=settings.redis_key_prefix, cache_ms=0)
    assert await uncached.top(datetime.now(UTC)) == expected, "Redis disagrees with Python"
    print(f"check: the Redis answer equals the plain-Python computation {expected}")

    read_model = ReadModel(runtime.engine)
    for label, view in (("cached 1 s", runtime.sales_view), ("no cache", uncached)):
        app = create_http_app(
            read_model,
            {},
            top_products=TopProducts(view, read_model, runtime.rebuild_sales_view, runtime.clock),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            p50, p99 = await _latencies(client, requests)
        print(f"GET /products/top ({label}): p50 {p50:.2f} ms, p99 {p99:.2f} ms over {requests}")

    await runtime.sales_view.clear()
    await runtime.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.delete_topics(
        [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    )
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.requests))


if __name__ == "__main__":
    main()
