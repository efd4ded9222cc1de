"""Benchmark: the HTTP read side under load from wrk, and the rate at which the sales
aggregator applies OrderPlaced events.

    .venv/bin/python -m tests.bench.http_queries                  # 20,000 events, 5 s each
    .venv/bin/python -m tests.bench.http_queries --events 300 --seconds 1   # smoke run

Uses the servers of `make up` and the default database, on topics, a consumer group and
a Redis key prefix of its own (the topics and the Redis keys are removed afterwards; the
seeded users, products and orders stay, with the books consistent, as in
`tests.bench.drain`).

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
2. Seeded with SQL: users with a balance, products, and history users (50 by default),
   each with 60 orders of 3 lines, every sixth cancelled (`tests.bench.order_books`), so
   that their orders and points statements fill pages of 20. Each request about a user
   carries that user's own bearer token, signed beforehand with the local servers' key
   as `shopflow token` signs them.
3. Checked, by one httpx client: every page of every history user's orders and
   statement (the order ids, statuses and totals seeded, the running balance, each
   `next_before` the last id of its page), a few orders alone, and a few answers of the
   other endpoints (the top five of what was sent; the seeded balance; the seeded
   product). The full pages found give the `before`s to load.
4. Loaded, one endpoint after another, by wrk (`tests.bench.http_load`: 32 keep-alive
   connections, each request one of the endpoint's at random): `GET /products/top`,
   `/users/{id}/points` (random seeded users), `/products/{id}` (random seeded
   products; public, no token), and the history: `/users/{id}/orders?limit=20&before=`
   and `/users/{id}/points/transactions?limit=20&before=` (a random full page of a random
   history user: the first, or one further on), `/users/{id}/orders/{order_id}` (a random
   order of one). Per endpoint: requests/s, p50, p99, max, and the CPU `shopflow serve`
   spent per request (from /proc), and wrk's.

   Points and product are the same work but for the token: one row read by primary key
   and one small JSON answer, so the two side by side are the read with and without the
   token check (its verification, cached per token after its first use, and the rule).

5. The baselines, with serve stopped: the same wrk loads on bare apps
   (`tests.bench.baseline_apps`) under serve's uvicorn settings, started in this run:
   B-db, `GET /products/{id}` by a bare Starlette app on a bare asyncpg pool (the same
   products and `SELECT`), and B-const, `GET /products/top` answering the bytes serve
   answered, held as a constant. shopflow's product, points and top reads are printed as
   ratios of them (requests/s and CPU a request).
6. Open loop: the product and the balance reads of serve (before it stops), and B-db's
   product read, offered 1,000 requests/s each (`OPEN_LOOP_RATE`, 10 s by default) by
   `tests.bench.open_loop_http` (pre-built requests, each timed from its intended send
   time, so a slow server cannot hide its queueing): p50, p99, max, and the client's CPU
   a request. Every answer must be 200.
7. Scaled out (`tests.bench.serve_processes`), between serve's loads and the
   baselines': two serve processes on one port (SO_REUSEPORT), each with half of
   SHOPFLOW_DB_POOL_SIZE, under the product read's wrk load; requests/s as a multiple
   of one process's, and the requests each process took (its own counter, read on its
   own port).

Steps 4 and 5 are a closed loop: a connection waits for its answer before sending the next
request, so at saturation the latency is the queueing at fixed concurrency (about
connections / rate by Little's law), not an open-loop latency at a given arrival rate.
wrk runs on the same (2-core) machine as the server, PostgreSQL and Redis, but spends a
few µs a request where the server spends hundreds. httpx is kept for the checks of step
3 (whole answers compared, which wrk does not read) and the health probe, not for load.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis

from shopflow.contracts.events import OrderPlaced, PlacedOrderLine
from shopflow.contracts.topics import ORDERS_EVENTS, Topics
from shopflow.domain.top_products import WINDOW_HOURS, Sale, SaleKind, top_of
from shopflow.kafka_access import SERVICE, kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.sales_view import SalesView
from shopflow.queries.auth import SCOPE_METRICS
from shopflow.queries.history import PAGE_DEFAULT
from shopflow.settings import Settings
from shopflow.tokens import local_signing_key, sign_token
from tests.bench import http_load, open_loop_http, serve_processes
from tests.bench.drain import seed
from tests.bench.http_load import EndpointLoad, Target
from tests.bench.latency import Latency
from tests.bench.order_books import SeededOrder, seed_orders
from tests.bench.serve_processes import ScaleOut
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
HISTORY_USERS = 50
HISTORY_ORDERS = 60  # per user: three full pages of orders, and of its statement
HISTORY_LINES = 3
HISTORY_CANCEL_EVERY = 6  # so that statements hold refunds, and orders both statuses
PAGE = PAGE_DEFAULT  # 20
CHECKED_ANSWERS = 20  # per endpoint of the three with no pages, before the load
POLL_S = 0.02
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
OPEN_LOOP_RATE = 1_000  # requests/s offered to each hot read, open loop
OPEN_LOOP_READS = ("/products/{id}", "/users/{id}/points")
BASELINE_DB = "B-db /products/{id}"
BASELINE_CONST = "B-const /products/top"
# Which baseline each of shopflow's reads is held against.
BASELINE_OF = {
    "/products/{id}": BASELINE_DB,
    "/users/{id}/points": BASELINE_DB,
    "/products/top": BASELINE_CONST,
}


@dataclass(frozen=True)
class OpenLoopRead:
    """One read offered OPEN_LOOP_RATE requests/s by `tests.bench.open_loop_http`, each
    timed from its intended send time."""

    endpoint: str
    latency: Latency
    client_cpu_us_per_request: float

    def line(self) -> str:
        return (
            self.latency.line(f"GET {self.endpoint}, open loop")
            + f"; the client's CPU {self.client_cpu_us_per_request:,.0f} µs a request"
        )


@dataclass(frozen=True)
class HttpQueries:
    aggregator_events_per_second: float
    client: str  # wrk's version
    connections: int
    seconds: int  # per endpoint, measured (after a warm-up)
    endpoints: list[EndpointLoad] = field(default_factory=list)
    # The same loads on bare apps (`tests.bench.baseline_apps`), in the same run:
    # "B-db /products/{id}" and "B-const /products/top".
    baselines: list[EndpointLoad] = field(default_factory=list)
    # OPEN_LOOP_RATE offered to the hot reads and to B-db, open loop.
    open_loops: list[OpenLoopRead] = field(default_factory=list)
    scale_out: ScaleOut | None = None  # two serve processes on one port

    def ratios(self) -> list[str]:
        """shopflow's reads against the baselines: requests/s as a share of the
        baseline's, and serve's CPU a request as a multiple of the baseline server's."""
        by_name = {load.endpoint: load for load in self.endpoints + self.baselines}
        lines = []
        for endpoint, baseline in BASELINE_OF.items():
            ours, base = by_name.get(endpoint), by_name.get(baseline)
            if ours is None or base is None:
                continue
            rate = ours.requests_per_second / base.requests_per_second
            cpu = ours.serve_cpu_us_per_request / base.serve_cpu_us_per_request
            lines.append(
                f"GET {endpoint}: {rate:.2f} of {baseline}'s requests/s, {cpu:.2f}x its CPU "
                f"a request; p99 {ours.p99_ms:.2f} ms against {base.p99_ms:.2f} ms"
            )
        return lines


async def _open_loop(port: int, target: Target, seconds: float) -> OpenLoopRead:
    """`target`'s requests, in turn, at OPEN_LOOP_RATE for `seconds`; every one must be
    answered 200."""
    host = f"127.0.0.1:{port}"
    built = [open_loop_http.get(host, path, _bearer(token)) for path, token in target.requests]
    count = int(OPEN_LOOP_RATE * seconds)
    requests = [built[i % len(built)] for i in range(count)]
    measured = await open_loop_http.run("127.0.0.1", port, requests, OPEN_LOOP_RATE)
    assert measured.statuses == {200: count}, f"{target.endpoint}: {measured.statuses}"
    read = OpenLoopRead(target.endpoint, measured.latency, measured.client_cpu_us_per_request)
    print(read.line(), flush=True)
    return read


def _metrics_token(settings: Settings) -> str:
    """A token that may read /metrics, as a scraper holds one."""
    return sign_token(
        local_signing_key(settings),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        scopes=[SCOPE_METRICS],
        subject="bench-scraper",
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


async def until_answering(
    base_url: str, process: asyncio.subprocess.Process, path: str = "/health/live"
) -> float:
    """Wait until the server answers GET `path` (the service's liveness by default) with
    200; returns when it did."""
    async with httpx.AsyncClient(base_url=base_url, timeout=1.0) as client:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                _alive(process)
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(path)).status_code == 200:
                        return time.perf_counter()
                await asyncio.sleep(0.05)


def _tokens(settings: Settings, user_ids: Iterable[int]) -> dict[int, str]:
    """Each user's own token, as a customer's client would hold it: signed beforehand
    (RS256 signing is the identity provider's cost, not the service's)."""
    key = local_signing_key(settings)
    return {
        user_id: sign_token(
            key, issuer=settings.auth_issuer, audience=settings.auth_audience, user_id=user_id
        )
        for user_id in user_ids
    }


def _ok(path: str, answer: httpx.Response) -> Any:
    assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
    return answer.json()


async def _pages(
    client: httpx.AsyncClient, path: str, token: str, items: str, id_key: str
) -> list[tuple[int | None, list[Any]]]:
    """Every page of a history, first to last: (the `before` it was asked with, its
    items); each `next_before` must be its page's last id."""
    pages: list[tuple[int | None, list[Any]]] = []
    before: int | None = None
    while True:
        query = _page_path(path, before)
        body = _ok(query, await client.get(query, headers=_bearer(token)))
        pages.append((before, body[items]))
        if body["next_before"] is None:
            return pages
        assert body["next_before"] == body[items][-1][id_key], f"GET {query}: {body}"
        before = body["next_before"]


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _history_targets(
    client: httpx.AsyncClient, seeded: Sequence[SeededOrder], tokens: dict[int, str]
) -> list[Target]:
    """Every history user's orders and statement read page by page and checked against
    what was seeded; the loads of the three history endpoints, of the full pages found
    and of every order."""
    by_user: dict[int, list[SeededOrder]] = {}
    for order in seeded:
        by_user.setdefault(order.user_id, []).append(order)
    orders_pages: list[tuple[str, str | None]] = []
    statement_pages: list[tuple[str, str | None]] = []
    for user_id, placed in by_user.items():
        token = tokens[user_id]
        newest_first = sorted(placed, key=lambda o: -o.order_id)
        path = f"/users/{user_id}/orders"
        pages = await _pages(client, path, token, "orders", "order_id")
        got = [o for _, page in pages for o in page]
        assert [o["order_id"] for o in got] == [o.order_id for o in newest_first], path
        for answer, order in zip(got, newest_first, strict=True):
            assert answer["total"] == order.total, f"{path}: {answer}"
            assert (answer["status"] == "cancelled") == order.cancelled, f"{path}: {answer}"
            assert len(answer["items"]) == len(order.lines), f"{path}: {answer}"
        orders_pages += [(_page_path(path, b), token) for b, p in pages if len(p) == PAGE]

        path = f"/users/{user_id}/points/transactions"
        pages = await _pages(client, path, token, "transactions", "transaction_id")
        got = [t for _, page in pages for t in page]
        kept = sum(o.total for o in placed if not o.cancelled)
        assert len(got) == 1 + len(placed) + sum(o.cancelled for o in placed), path
        assert got[0]["balance_after"] == BALANCE - kept == sum(t["amount"] for t in got), path
        statement_pages += [(_page_path(path, b), token) for b, p in pages if len(p) == PAGE]

        order = newest_first[0]
        path = f"/users/{user_id}/orders/{order.order_id}"
        answer = _ok(path, await client.get(path, headers=_bearer(token)))
        assert (answer["order_id"], answer["total"]) == (order.order_id, order.total), answer
    assert orders_pages, "no full page of orders"
    assert statement_pages, "no full page of a statement"
    return [
        Target(f"/users/{{id}}/orders?limit={PAGE}&before=…", orders_pages),
        Target(
            "/users/{id}/orders/{order_id}",
            [(f"/users/{o.user_id}/orders/{o.order_id}", tokens[o.user_id]) for o in seeded],
        ),
        Target(f"/users/{{id}}/points/transactions?limit={PAGE}&before=…", statement_pages),
    ]


def _page_path(path: str, before: int | None) -> str:
    return f"{path}?limit={PAGE}" + (f"&before={before}" if before else "")


async def _checked(
    client: httpx.AsyncClient, target: Target, check: Callable[[str, Any], None]
) -> Target:
    """`target`, after CHECKED_ANSWERS of its requests (random) answered as `check` wants."""
    rng = random.Random(3)
    for path, token in rng.choices(target.requests, k=CHECKED_ANSWERS):
        check(path, _ok(path, await client.get(path, headers=_bearer(token))))
    return target


async def run(
    events: int = 20_000,
    seconds: int = 5,
    connections: int = 32,
    history_users: int = HISTORY_USERS,
    open_loop_seconds: float = 10.0,
) -> HttpQueries:
    if events < 1 or seconds < 1 or connections < 1 or history_users < 1:
        raise ValueError(
            f"events {events}, seconds {seconds}, connections {connections}, "
            f"history users {history_users}"
        )
    wrk = http_load.ensure_wrk()  # before anything starts: it may install it
    settings = scratch_settings()
    run_id = settings.consumer_group
    settings = settings.model_copy(update={"redis_key_prefix": f"shopflow:{run_id}:top"})
    engine = create_engine(settings.database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    # The bench's own look at the view (SCARD), as Redis's admin: the service's user may
    # run only the commands the service uses.
    observer = Redis.from_url(admin_redis_url(settings))
    view = SalesView(redis, prefix=settings.redis_key_prefix)
    processes: list[asyncio.subprocess.Process] = []
    try:
        await migrate(
            settings.migration_database_url, settings.database_url, settings.query_database_url
        )
        await create_scratch_topics(settings)
        first_id = secrets.randbelow(2**60) + 1
        user_ids = [first_id + i for i in range(USERS)]
        history_ids = [first_id + USERS + i for i in range(history_users)]
        product_ids = [first_id + i for i in range(SEEDED_PRODUCTS)]
        await seed(engine, user_ids + history_ids, BALANCE, product_ids)
        history = await seed_orders(
            engine,
            f"bench-{first_id:x}",
            history_users * HISTORY_ORDERS,
            history_ids,
            product_ids,
            lines=HISTORY_LINES,
            cancel_every=HISTORY_CANCEL_EVERY,
        )
        await engine.dispose()
        tokens = _tokens(settings, user_ids + history_ids)

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
        worker = await launch("worker", env)
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
        server = await launch("serve", env, "--no-consume")
        processes.append(server)
        answering = await until_answering(base_url, server)
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

        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
            targets = [
                await _checked(
                    client, Target("/products/top", [("/products/top", None)]), check_top
                ),
                await _checked(
                    client,
                    Target(
                        "/users/{id}/points",
                        [(f"/users/{u}/points", tokens[u]) for u in user_ids],
                    ),
                    check_points,
                ),
                await _checked(
                    client,
                    Target("/products/{id}", [(f"/products/{p}", None) for p in product_ids]),
                    check_product,
                ),
                *await _history_targets(client, history, tokens),
            ]
            top_body = (await client.get("/products/top")).content  # B-const's answer
        print(
            f"checks: the answers of every endpoint as expected, every page of {history_users} "
            "users' orders and statements as seeded",
            flush=True,
        )
        loads = []
        for target in targets:
            load = await http_load.measure(wrk, target, base_url, server.pid, connections, seconds)
            print(load.line(), flush=True)
            loads.append(load)
        hot = [t for t in targets if t.endpoint in OPEN_LOOP_READS]
        open_loops = [await _open_loop(port, target, open_loop_seconds) for target in hot]
        await stop(server)  # idle, but out of the baselines' way
        product_target = next(t for t in targets if t.endpoint == "/products/{id}")
        scale_out = await serve_processes.measure(
            wrk,
            product_target,
            env,
            processes=2,
            pool_size=settings.db_pool_size,
            single=next(load for load in loads if load.endpoint == "/products/{id}"),
            metrics_token=_metrics_token(settings),
            connections=connections,
            seconds=seconds,
            launch=lambda process_env: launch("serve", process_env, "--no-consume"),
            stop=stop,
            ready=until_answering,
        )
        print(scale_out.line(), flush=True)
        baselines = []
        for kind, name, target, options in (
            ("db", BASELINE_DB, product_target, ()),
            ("const", BASELINE_CONST, targets[0], ("--body", top_body.decode())),
        ):
            port = free_port()
            baseline = await launch_baseline(kind, env, port, *options)
            processes.append(baseline)
            baseline_url = f"http://127.0.0.1:{port}"
            await until_answering(baseline_url, baseline, path=target.requests[0][0])
            named = Target(name, target.requests)
            load = await http_load.measure(
                wrk, named, baseline_url, baseline.pid, connections, seconds
            )
            print(load.line().replace("serve ", "the baseline "), flush=True)
            baselines.append(load)
            if kind == "db":
                open_loops.append(await _open_loop(port, named, open_loop_seconds))
            await stop(baseline)
        result = HttpQueries(
            rate,
            http_load.wrk_version(wrk),
            connections,
            seconds,
            loads,
            baselines,
            open_loops,
            scale_out,
        )
        for line in result.ratios():
            print(line, flush=True)
        return result
    finally:
        for process in reversed(processes):
            await stop(process)
        await view.clear()
        await redis.delete(f"{settings.redis_key_prefix}.rebuild-lock")
        await redis.aclose()
        await observer.aclose()
        await engine.dispose()
        await delete_scratch_topics(settings)


async def launch(command: str, env: dict[str, str], *options: str) -> asyncio.subprocess.Process:
    log_level = os.environ.get("BENCH_SERVICE_LOG", "warning")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopflow", command, *options, "--log-level", log_level, env=env
    )


async def launch_baseline(
    kind: str, env: dict[str, str], port: int, *options: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.baseline_apps",
        kind,
        "--port",
        str(port),
        *options,
        env=env,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
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
    parser.add_argument("--seconds", type=int, default=5, help="per endpoint (whole seconds)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--history-users", type=int, default=HISTORY_USERS)
    parser.add_argument(
        "--open-loop-seconds", type=float, default=10.0, help=f"at {OPEN_LOOP_RATE}/s, each"
    )
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args()
    # Each figure is printed as it is measured.
    result = asyncio.run(
        run(args.events, args.seconds, args.connections, args.history_users, args.open_loop_seconds)
    )
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
