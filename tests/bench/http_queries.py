"""Benchmark: the HTTP read side over real HTTP at 32 concurrent clients, and the rate at
which the sales aggregator applies OrderPlaced events.

    .venv/bin/python -m tests.bench.http_queries                  # 20,000 events, 5 s each
    .venv/bin/python -m tests.bench.http_queries --events 300 --seconds 1   # smoke run

Uses the servers of `make up` and the default database, on topics, a consumer group and
a Redis key prefix of its own (the topics and the Redis keys are removed afterwards; the
seeded users stay, with the charge that explains their balance, as in `tests.bench.drain`).

Two subprocesses, as in a deployment that scales them apart: `shopflow worker` (the
consumers, the sales aggregator among them) and `shopflow serve --no-consume` (the HTTP
queries: uvicorn on 127.0.0.1 and a free port). The worker keeps running, idle, while
HTTP is measured.
Both log at `warning` (so uvicorn writes no access log line per request); set
BENCH_SERVICE_LOG=info to see more.

1. The events (3 lines each, 200 products, spread over the last 72 hours) are produced
   first; the view is marked built (so no process rebuilds it from the shared database's
   order lines), then the worker starts. Progress is read from Redis, not from the
   service: the number of distinct order markers in the view's `seen` sets, polled every
   20 ms. The rate is that of the events applied after the first were seen, from then to
   the last (so the first batch's own time is not counted without its events). The
   Redis answer must equal `domain.top_products.top_of` of what was sent.
2. Users with a balance and products are seeded with SQL. Then, separately for
   `GET /products/top`, `GET /users/{id}/points` (random seeded users, each request with
   that user's own bearer token, signed with the local servers' key as `shopflow token`
   signs them) and `GET /products/{id}` (random seeded products; public, no token),
   `clients` asyncio tasks, each with its own keep-alive `httpx.AsyncClient` (one
   connection), send requests back to back for `seconds` after a short unrecorded
   warm-up. Every answer must be 200 and equal to what is expected (the top five of what
   was sent; the seeded balance; the seeded product). Latencies are recorded in
   microseconds in an HdrHistogram.

   Points and product are the same work but for the token: one row read by primary key
   and one small JSON answer, so the two side by side are the read with and without the
   token check (its verification, cached per token after its first use, and the rule).

This is a closed loop: a client waits for its answer before sending the next request, so
at saturation the latency is the queueing at fixed concurrency (about clients / rate by
Little's law), not an open-loop latency at a given arrival rate. The clients run in this
process, on the same (2-core) machine as the server, PostgreSQL and Redis.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import ssl
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hdrh.histogram import HdrHistogram
from redis.asyncio import Redis

from shopflow.contracts.events import OrderPlaced, PlacedOrderLine
from shopflow.contracts.topics import ORDERS_EVENTS, Topics
from shopflow.domain.top_products import WINDOW_HOURS, Sale, SaleKind, top_of
from shopflow.kafka_access import SERVICE, kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.sales_view import SalesView
from shopflow.settings import Settings
from shopflow.tokens import local_signing_key, sign_token
from tests.bench.drain import seed
from tests.support.ports import free_port
from tests.support.scratch import (
    admin_redis_url,
    create_scratch_topics,
    delete_scratch_topics,
    scratch_settings,
    service_env,
)

PRODUCTS = 200
USERS = 1_000
SEEDED_PRODUCTS = 1_000  # for GET /products/{id}, ids of their own
BALANCE = 12_345
WARM_UP_REQUESTS = 5  # per client, not recorded
POLL_S = 0.02
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
LOWEST_US, HIGHEST_US = 1, 60_000_000


@dataclass(frozen=True)
class HttpQueries:
    aggregator_events_per_second: float
    top_p50_ms: float
    top_p99_ms: float
    top_max_ms: float
    top_requests_per_second: float
    points_p50_ms: float
    points_p99_ms: float
    points_max_ms: float
    points_requests_per_second: float
    product_p50_ms: float
    product_p99_ms: float
    product_max_ms: float
    product_requests_per_second: float
    clients: int

    def lines(self) -> list[str]:
        def endpoint(what: str, p50: float, p99: float, top: float, rate: float) -> str:
            return (
                f"{what}, {self.clients} clients: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                f"max {top:.2f} ms, {rate:,.0f} requests/s"
            )

        return [
            f"aggregator: {self.aggregator_events_per_second:,.0f} events/s applied",
            endpoint(
                "GET /products/top",
                self.top_p50_ms,
                self.top_p99_ms,
                self.top_max_ms,
                self.top_requests_per_second,
            ),
            endpoint(
                "GET /users/{id}/points (the user's own token)",
                self.points_p50_ms,
                self.points_p99_ms,
                self.points_max_ms,
                self.points_requests_per_second,
            ),
            endpoint(
                "GET /products/{id} (public: no token)",
                self.product_p50_ms,
                self.product_p99_ms,
                self.product_max_ms,
                self.product_requests_per_second,
            ),
        ]


@dataclass(frozen=True)
class _Load:
    requests: int
    seconds: float
    histogram: HdrHistogram

    def figures(self) -> tuple[float, float, float, float]:
        """p50, p99 and max in milliseconds, and requests per second."""
        return (
            self.histogram.get_value_at_percentile(50) / 1000,
            self.histogram.get_value_at_percentile(99) / 1000,
            self.histogram.get_max_value() / 1000,
            self.requests / self.seconds,
        )


def _events(count: int, run_id: str, now: datetime) -> list[OrderPlaced]:
    rng = random.Random(7)
    events = []
    for i in range(count):
        products = rng.sample(range(1, PRODUCTS + 1), 3)
        events.append(
            OrderPlaced(
                event_id=uuid.uuid4(),
                command_id=f"bench-{run_id}-{i}",
                occurred_at=now - timedelta(seconds=rng.randrange(WINDOW_HOURS * 3600 - 600)),
                user_id=rng.randrange(1, 10_000),
                order_id=i + 1,
                items=[
                    PlacedOrderLine(product_id=p, quantity=rng.randint(1, 5), unit_price=1)
                    for p in products
                ],
                total=0,
                balance=0,
            )
        )
    return events


async def _produce(settings: Settings, events: list[OrderPlaced]) -> None:
    # Order events, as the service publishes them: only its principal may write them.
    producer = kafka_connection(settings, SERVICE).producer(enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        topic = Topics(settings.topic_prefix).name(ORDERS_EVENTS)
        pending = [
            await producer.send(
                topic, event.model_dump_json().encode(), key=str(event.user_id).encode()
            )
            for event in events
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _seen_keys(prefix: str, events: list[OrderPlaced]) -> list[str]:
    # The view's documented layout (persistence.sales_view): `{prefix}:{YYYYMMDDHH}:seen`
    # holds a marker per order placed (or cancelled) in that hour.
    hours = {e.occurred_at.astimezone(UTC).strftime("%Y%m%d%H") for e in events}
    return [f"{prefix}:{{{hour}}}:seen" for hour in sorted(hours)]


async def _applied(redis: Redis, keys: list[str]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.scard(key)
        counts = await pipe.execute()
    return sum(int(c) for c in counts)


def _alive(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        raise RuntimeError(
            f"a shopflow subprocess (pid {process.pid}) exited with code {process.returncode}"
        )


async def _aggregation(
    redis: Redis, keys: list[str], events: int, process: asyncio.subprocess.Process
) -> tuple[float, float]:
    """(events per second, when the first were seen applied). The rate is of the events
    applied after the first were seen, over the time from then to the last; if all were
    seen at once, of all of them over the time since the last poll that saw none (a lower
    bound)."""
    none_seen = time.perf_counter()
    first = 0.0
    at_first = 0
    async with asyncio.timeout(max(START_TIMEOUT_S, events / 100)):
        while (applied := await _applied(redis, keys)) < events:
            _alive(process)
            if not applied:
                none_seen = time.perf_counter()
            elif not first:
                first, at_first = time.perf_counter(), applied
            await asyncio.sleep(POLL_S)
    last = time.perf_counter()
    if not first:
        return events / (last - none_seen), last
    return (events - at_first) / (last - first), first


async def _answering(base_url: str, process: asyncio.subprocess.Process) -> float:
    """Wait until the service answers GET /health/live; returns when it did."""
    async with httpx.AsyncClient(base_url=base_url, timeout=1.0) as client:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                _alive(process)
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/live")).status_code == 200:
                        return time.perf_counter()
                await asyncio.sleep(0.05)


async def _load(
    base_url: str,
    clients: int,
    seconds: float,
    path_of: Callable[[random.Random], str],
    check: Callable[[str, Any], None],
    headers_of: Callable[[str], dict[str, str]] = lambda _: {},
) -> _Load:
    """`clients` tasks, each with its own keep-alive connection, sending back to back for
    `seconds` after a warm-up; each request's latency in microseconds. `headers_of` gives
    a request's headers from its path (its user's token)."""
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, 3)
    # One context for all: httpx would load the CA bundle once per client (about 30 ms of
    # CPU each), although plain http never uses it.
    tls = ssl.create_default_context()
    warmed = 0
    go = asyncio.Event()
    count = 0
    started = deadline = 0.0

    def verify(path: str, answer: httpx.Response) -> None:
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        check(path, answer.json())

    async def client_loop(seed: int) -> None:
        nonlocal warmed, count, started, deadline
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S, verify=tls
        ) as client:
            for _ in range(WARM_UP_REQUESTS):
                path = path_of(rng)
                verify(path, await client.get(path, headers=headers_of(path)))
            warmed += 1
            if warmed == clients:  # the last to be warmed up starts the clock
                started = time.perf_counter()
                deadline = started + seconds
                go.set()
            await go.wait()
            while time.perf_counter() < deadline:
                path = path_of(rng)
                headers = headers_of(path)
                sent = time.perf_counter_ns()
                answer = await client.get(path, headers=headers)
                elapsed_us = (time.perf_counter_ns() - sent) // 1000
                histogram.record_value(min(HIGHEST_US, max(LOWEST_US, elapsed_us)))
                count += 1
                verify(path, answer)

    async with asyncio.TaskGroup() as group:
        for i in range(clients):
            group.create_task(client_loop(i))
    assert count, "no request was sent"
    return _Load(count, time.perf_counter() - started, histogram)


async def run(events: int = 20_000, seconds: float = 5.0, clients: int = 32) -> HttpQueries:
    if events < 1 or seconds <= 0 or clients < 1:
        raise ValueError(f"events {events}, seconds {seconds}, clients {clients}")
    settings = scratch_settings()
    run_id = settings.consumer_group
    settings = settings.model_copy(update={"redis_key_prefix": f"shopflow:{run_id}:top"})
    engine = create_engine(settings.database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    # The bench's own look at the view (SCARD), as Redis's admin: the service's user may
    # run only the commands the service uses.
    observer = Redis.from_url(admin_redis_url(settings))
    view = SalesView(redis, prefix=settings.redis_key_prefix, cache_ms=0)
    processes: list[asyncio.subprocess.Process] = []
    try:
        await migrate(
            settings.migration_database_url, settings.database_url, settings.query_database_url
        )
        await create_scratch_topics(settings)
        first_id = secrets.randbelow(2**60) + 1
        user_ids = [first_id + i for i in range(USERS)]
        product_ids = [first_id + i for i in range(SEEDED_PRODUCTS)]
        await seed(engine, user_ids, BALANCE, product_ids)
        await engine.dispose()
        # Each user's own token, as a customer's client would hold it: signed beforehand
        # (RS256 signing is the identity provider's cost, not the service's).
        key = local_signing_key(settings)
        tokens = {
            user_id: {
                "Authorization": "Bearer "
                + sign_token(
                    key,
                    issuer=settings.auth_issuer,
                    audience=settings.auth_audience,
                    user_id=user_id,
                )
            }
            for user_id in user_ids
        }

        now = datetime.now(UTC)
        sent = _events(events, run_id, now)
        await _produce(settings, sent)
        print(f"produced {events} OrderPlaced events", flush=True)
        await view.mark_built(now)  # the view is fed by these events only

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = service_env(
            settings,
            SHOPFLOW_REDIS_KEY_PREFIX=settings.redis_key_prefix,
            SHOPFLOW_HTTP_HOST="127.0.0.1",
            SHOPFLOW_HTTP_PORT=str(port),
        )
        launched = time.perf_counter()
        worker = await _launch("worker", env)
        processes.append(worker)
        rate, first = await _aggregation(
            observer, _seen_keys(settings.redis_key_prefix, sent), events, worker
        )
        print(
            f"shopflow worker: first events applied {first - launched:.2f} s after launch; "
            f"aggregator {rate:,.0f} events/s",
            flush=True,
        )
        launched = time.perf_counter()
        server = await _launch("serve", env, "--no-consume")
        processes.append(server)
        answering = await _answering(base_url, server)
        print(f"shopflow serve --no-consume: answering {answering - launched:.2f} s after launch")

        expected = top_of(
            [
                Sale(
                    SaleKind.PLACED,
                    e.order_id,
                    e.occurred_at,
                    tuple((line.product_id, line.quantity) for line in e.items),
                )
                for e in sent
            ],
            datetime.now(UTC),
        )
        assert await view.top(datetime.now(UTC)) == expected, "Redis disagrees with Python"
        print(f"check: the Redis answer equals the plain-Python computation {expected}")

        def check_top(path: str, body: Any) -> None:
            assert body["window_hours"] == WINDOW_HOURS, f"GET {path}: {body}"
            got = [(p["product_id"], p["units_sold"]) for p in body["products"]]
            assert got == expected, f"GET {path}: {got}, not {expected}"
            assert all(isinstance(p["name"], str) for p in body["products"]), body

        def check_points(path: str, body: Any) -> None:
            user_id = int(path.split("/")[2])
            assert body == {"user_id": user_id, "balance": BALANCE}, f"GET {path}: {body}"

        def check_product(path: str, body: Any) -> None:
            product_id = int(path.split("/")[2])
            assert body["product_id"] == product_id, f"GET {path}: {body}"
            assert body["name"] == "bench", f"GET {path}: {body}"

        top = await _load(base_url, clients, seconds, lambda _: "/products/top", check_top)
        points = await _load(
            base_url,
            clients,
            seconds,
            lambda rng: f"/users/{rng.choice(user_ids)}/points",
            check_points,
            lambda path: tokens[int(path.split("/")[2])],
        )
        product = await _load(
            base_url,
            clients,
            seconds,
            lambda rng: f"/products/{rng.choice(product_ids)}",
            check_product,
        )
        answers = top.requests + points.requests + product.requests
        print(f"checks: {answers} answers, all 200 and as expected", flush=True)
        return HttpQueries(
            rate, *top.figures(), *points.figures(), *product.figures(), clients=clients
        )
    finally:
        for process in reversed(processes):
            await _stop(process)
        await view.clear()
        await redis.delete(f"{settings.redis_key_prefix}.rebuild-lock")
        await redis.aclose()
        await observer.aclose()
        await engine.dispose()
        await delete_scratch_topics(settings)


async def _launch(command: str, env: dict[str, str], *options: str) -> asyncio.subprocess.Process:
    log_level = os.environ.get("BENCH_SERVICE_LOG", "warning")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopflow", command, *options, "--log-level", log_level, env=env
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()  # both stop cleanly on SIGTERM
    try:
        await asyncio.wait_for(process.wait(), timeout=45)
    except TimeoutError:
        process.kill()
        await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args.events, args.seconds, args.clients))
    for line in result.lines():
        print(line)
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
