"""Fault 7 of the issue, "Redis flushed, and Redis stopped": commands keep flowing, top
products answer from PostgreSQL, and the view is rebuilt and matches.

Redis holds only a view (the top-products sales buckets), rebuilt from PostgreSQL, the
source of truth; losing it must cost neither a command nor a right answer. While the
stream is sent, with a `shopflow serve --no-consume` of the run's own answering
GET /products/top (the run's workers do the consuming, the sales aggregator among them):
1. at a third of the stream, FLUSHALL (an operator's mistake, a failover to an empty
   replica): the view is gone while orders keep coming. GET /products/top must answer
   200 with PostgreSQL's top 5 (the service finds the view missing, answers from
   PostgreSQL and rebuilds the view in the background by itself);
2. at half, Redis SIGKILLed (it keeps nothing on disk): until two thirds of the stream
   (and at least `MIN_OUTAGE_S`), every GET /products/top must answer 200 with
   PostgreSQL's top 5, while the commands keep being applied and answered (the driver
   checks those);
3. then Redis started again, empty. Nobody runs `shopflow rebuild-top`: the service
   rebuilds the view by itself when a query (or a serve starting) finds it missing -
   the workers never do; until then the view holds only what their aggregator counted
   since - and this fault checks that it did; once the stream is sent and the
   aggregator has caught up, the view's units per product in the window (every
   product, not only the top 5) must equal PostgreSQL's, and GET /products/top must
   answer from Redis what PostgreSQL says.

"What PostgreSQL says" is the service's own fallback (`ReadModel.top_products`, ranking
every product here). Orders land while a request is answered, so an answer is checked
against PostgreSQL read just before and just after it: units sold in the window only
grow, so a right answer is PostgreSQL's top 5 at some moment in between; a check that
fails is tried again for `ANSWER_TIMEOUT_S`. Where an answer came from (Redis, or
PostgreSQL and why) is read from the service's `shopflow_top_products_fallback_total`.

The serve is started when the stream starts (a fault begins there) and takes seconds to
answer (its imports alone, about 4 s on a busy 2-core machine): each step waits for the
one before, so on a stream shorter than about 15 s the steps fall late in it or after it,
which the notes say ("the end of the stream (over)"); the checks hold either way.

PostgreSQL's answer covers every order of the database, the view those of its prefix's
aggregator plus what its rebuilds read: they agree as long as no other run places
orders on the same database meanwhile (the suite runs its faults one after another).
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shopflow.domain.top_products import TOP_LIMIT, rank
from shopflow.persistence.database import create_engine
from shopflow.persistence.sales_view import SalesView
from shopflow.queries.auth import SCOPE_METRICS
from shopflow.queries.read_model import ReadModel
from shopflow.redis_connection import redis_client
from shopflow.tokens import local_signing_key, sign_token
from tests.chaos.driver import Fault, Run
from tests.chaos.serve import Serve, stopped_cleanly
from tests.chaos.servers import REPO

FLUSH_AT = 1 / 3  # shares of the stream
STOP_AT = 1 / 2
START_AT = 2 / 3
MIN_OUTAGE_S = 2.0  # Redis stays away at least this long
OUTAGE_QUERY_EVERY_S = 0.25
ANSWER_TIMEOUT_S = 5.0  # a check of an answer against PostgreSQL is tried this long
REBUILD_TIMEOUT_S = 15.0  # for the service to rebuild a missing view
MATCH_TIMEOUT_S = 15.0  # after the stream, for the view to match PostgreSQL
HTTP_TIMEOUT_S = 10.0
METRICS_TOKEN_TTL_S = 6 * 3600  # longer than any run
EVERY_PRODUCT = 1_000_000  # a limit no ranking reaches
FALLBACKS = "shopflow_top_products_fallback_total"

Ranking = list[tuple[int, str, int]]  # (product id, name, units sold), best first


def _short(ranking: Ranking) -> str:
    return "[" + ", ".join(f"{p}:{u}" for p, _, u in ranking) + "]"


def _fits(answer: Ranking, before: Ranking, after: Ranking) -> bool:
    """Whether `answer` is PostgreSQL's top 5 at some moment between two readings of
    its whole ranking (units sold only grow meanwhile): each product of the answer
    within its two readings, in the service's order, and no other product ahead of the
    last one even at its first reading."""
    if answer in (before[:TOP_LIMIT], after[:TOP_LIMIT]):
        return True
    low = {p: u for p, _, u in before}
    high = {p: u for p, _, u in after}
    names = {p: n for p, n, _ in after}
    units = {p: u for p, _, u in answer}
    if len(units) != len(answer) or [(p, u) for p, _, u in answer] != rank(units, TOP_LIMIT):
        return False
    if any(n != names.get(p) or not low.get(p, 0) <= u <= high.get(p, 0) for p, n, u in answer):
        return False
    others = [(p, u) for p, u in low.items() if p not in units]
    if len(answer) < TOP_LIMIT:
        return not others
    last_product, _, last_units = answer[-1]
    return all((-u, p) > (-last_units, last_product) for p, u in others)


async def _postgresql(read_model: ReadModel, now: datetime | None = None) -> Ranking:
    """Every product sold in the window, ranked as the service's fallback ranks them."""
    views = await read_model.top_products(now or datetime.now(UTC), limit=EVERY_PRODUCT)
    return [(v.product_id, v.name, v.units_sold) for v in views]


@dataclass
class Answer:
    """One check of GET /products/top against PostgreSQL."""

    ok: bool
    source: str  # "redis", or "postgresql (<reason>)"
    seconds: float  # the request that was checked last
    tries: int
    wrong: str  # what was wrong, if not ok

    def describe(self) -> str:
        tries = "" if self.tries == 1 else f", {self.tries} tries"
        return f"from {self.source} in {self.seconds * 1000:.0f} ms{tries}"


class Service:
    """The fault's own `shopflow serve --no-consume` (`tests.chaos.serve`), answering
    GET /products/top over the run's PostgreSQL and Redis, its log among the workers'."""

    def __init__(self, serve: Serve, http: httpx.AsyncClient, metrics_token: str) -> None:
        self.serve = serve
        self.http = http
        # `serve`'s /metrics asks for the scope shopflow:metrics (a Prometheus's token);
        # signed with the servers' key, which the serve checks tokens against.
        self.metrics_headers = {"Authorization": f"Bearer {metrics_token}"}

    @classmethod
    def around(cls, run: Run, serve: Serve) -> "Service":
        """Queries to `serve`, started or not (redis-sentinel-failover asks the driver's,
        whose HTTP writes count in the rate limits)."""
        metrics_token = sign_token(
            local_signing_key(run.settings),
            issuer=run.settings.auth_issuer,
            audience=run.settings.auth_audience,
            scopes=[SCOPE_METRICS],
            ttl_s=METRICS_TOKEN_TTL_S,
        )
        return cls(
            serve, httpx.AsyncClient(base_url=serve.url, timeout=HTTP_TIMEOUT_S), metrics_token
        )

    @classmethod
    async def start(cls, run: Run) -> "Service":
        log_dir = REPO / ".infra" / "chaos-logs" / run.settings.consumer_group
        service = cls.around(run, Serve(run.settings, log_dir / "serve.log", log_level="info"))
        serve = service.serve
        try:
            await serve.start()
        except BaseException:
            await service.stop()
            raise
        return service

    async def top(self) -> tuple[int, Ranking]:
        """GET /products/top: its status and, if 200, its ranking. An answer that does
        not come (a timeout, the connection refused) is a status of 0."""
        try:
            response = await self.http.get("/products/top")
        except httpx.TransportError:
            return 0, []
        if response.status_code != 200:
            return response.status_code, []
        body: dict[str, Any] = response.json()
        return 200, [(p["product_id"], p["name"], p["units_sold"]) for p in body["products"]]

    async def counters(self, name: str, label: str = "") -> dict[str, float]:
        """The service's samples of counter `name` so far, by the value of `label` (""
        for a counter without labels)."""
        counts: dict[str, float] = {}
        response = await self.http.get("/metrics", headers=self.metrics_headers)
        assert response.status_code == 200, f"GET /metrics: {response.status_code} {response.text}"
        text = response.text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    counts[sample.labels.get(label, "")] = sample.value
        return counts

    async def fallbacks(self) -> dict[str, float]:
        """The service's answers from PostgreSQL so far, by reason."""
        return await self.counters(FALLBACKS, "reason")

    async def check(self, read_model: ReadModel, *, timeout: float = ANSWER_TIMEOUT_S) -> Answer:
        """GET /products/top until it answers what PostgreSQL says (see `_fits`), for
        `timeout`. An answer other than 200 fails the check at once."""
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            tries += 1
            counted = await self.fallbacks()
            before = await _postgresql(read_model)
            began = time.monotonic()
            status, answer = await self.top()
            took = time.monotonic() - began
            after = await _postgresql(read_model)
            now_counted = await self.fallbacks()
            reasons = [r for r, n in now_counted.items() if n > counted.get(r, 0.0)]
            source = f"postgresql ({', '.join(sorted(reasons))})" if reasons else "redis"
            if status != 200:
                return Answer(False, source, took, tries, f"answered {status or 'nothing'}")
            if _fits(answer, before, after):
                return Answer(True, source, took, tries, "")
            if time.monotonic() > deadline:
                wrong = (
                    f"answered {_short(answer)}; PostgreSQL had {_short(before[:TOP_LIMIT])} "
                    f"just before and {_short(after[:TOP_LIMIT])} just after"
                )
                return Answer(False, source, took, tries, wrong)
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """The client only; the serve goes on."""
        await self.http.aclose()

    async def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL if it does not exit in time); its exit code."""
        await self.close()
        return await self.serve.stop()


def redis_outage() -> Fault:
    """FLUSHALL at a third of the stream, Redis SIGKILLed at half and started again (empty)
    at two thirds; top products checked against PostgreSQL throughout, and the view
    rebuilt by the service and equal to PostgreSQL's sales at the end. Two faults."""

    async def inject(run: Run) -> int:
        began = time.monotonic()
        service = await Service.start(run)
        engine = create_engine(run.settings.database_url, pool_size=2)
        try:
            run.notes.append(
                f"shopflow serve --no-consume answering {time.monotonic() - began:.1f} s "
                f"after the stream began (at {run.sent / run.total:.0%} of it)"
            )
            checks = ViewChecks(run, service, ReadModel(engine), "redis-outage")
            await checks.view_built("its start")
            await run.until_sent(FLUSH_AT)
            await checks.flush()
            await run.until_sent(STOP_AT)
            await checks.outage()
            await run.until_sent(1.0)
            await checks.view_matches()
        finally:
            code = await service.stop()
            await engine.dispose()
        if not stopped_cleanly(code):
            run.problems.append(f"redis-outage: shopflow serve exited {code} on SIGTERM")
        return 2

    return inject


async def _built(view: SalesView) -> bool:
    """Whether the view is built; not while Redis does not answer (a failover)."""
    try:
        return await view.is_built()
    except RedisError:
        return False


class ViewChecks:
    """The checks of the view and of GET /products/top against PostgreSQL, for the fault
    named `fault` (its problems are prefixed with it): redis-outage's steps, and what
    redis-sentinel-failover shares with it."""

    def __init__(self, run: Run, service: Service, read_model: ReadModel, fault: str) -> None:
        self.run = run
        self.service = service
        self.read_model = read_model
        self.fault = fault
        self.back_at = 0.0  # when Redis answered again

    def _problem(self, text: str) -> None:
        self.run.problems.append(f"{self.fault}: {text}")

    def share(self) -> str:
        """Where the stream is: a share of it, or over (a stream shorter than the
        serve's start and the steps before leaves the rest of the fault after it)."""
        if not self.run.streaming:
            return "the end of the stream (over)"
        return f"{self.run.sent / self.run.total:.0%} of the stream"

    @contextlib.asynccontextmanager
    async def view(self) -> AsyncIterator[SalesView]:
        """The run's view, read without the answer cache, on a connection of its own (to
        the one server, or the primary the Sentinels name)."""
        redis = redis_client(self.run.settings)
        try:
            yield SalesView(redis, prefix=self.run.settings.redis_key_prefix)
        finally:
            await redis.aclose()

    async def view_built(self, after: str, *, query: bool = False) -> float | None:
        """Wait until the view is marked built (rebuilt from PostgreSQL); seconds waited,
        None (and a problem) if not within REBUILD_TIMEOUT_S. With `query`, asks for top
        products meanwhile (each request that finds the view missing may start the
        rebuild, as a user's would)."""
        began = time.monotonic()
        async with self.view() as view:
            while not await _built(view):
                if time.monotonic() - began > REBUILD_TIMEOUT_S:
                    self._problem(
                        f"the view was not rebuilt within {REBUILD_TIMEOUT_S:.0f} s of {after}"
                    )
                    return None
                if query:
                    status, _ = await self.service.top()
                    if status != 200:
                        self._problem(f"GET /products/top answered {status} after {after}")
                await asyncio.sleep(0.1)
        return time.monotonic() - began

    async def flush(self) -> None:
        share = self.share()
        # As Redis's admin user: the service's may not FLUSHALL.
        redis = Redis.from_url(self.run.servers.admin_redis_url())
        try:
            await redis.flushall()
        finally:
            await redis.aclose()
        flushed = time.monotonic()
        answer = await self.service.check(self.read_model)
        if not answer.ok:
            self._problem(f"after FLUSHALL, GET /products/top {answer.wrong}")
        # The first query found the view missing and started its rebuild.
        rebuilt = await self.view_built("FLUSHALL", query=True)
        rebuilt_in = "never" if rebuilt is None else f"{time.monotonic() - flushed:.2f} s after it"
        self.run.notes.append(
            f"FLUSHALL at {share}: GET /products/top answered "
            f"{answer.describe()}{'' if answer.ok else ' WRONG'}; the service rebuilt the "
            f"view by itself {rebuilt_in}"
        )

    async def outage(self) -> None:
        share = self.share()
        sent = self.run.sent
        killed = time.monotonic()
        await self.run.servers.kill("redis")
        answers: list[Answer] = []
        try:
            while True:
                answer = await self.service.check(self.read_model)
                answers.append(answer)
                if not answer.ok:
                    self._problem(f"with Redis down, GET /products/top {answer.wrong}")
                if (
                    self.run.sent >= START_AT * self.run.total
                    and time.monotonic() - killed >= MIN_OUTAGE_S
                ):
                    break
                await asyncio.sleep(OUTAGE_QUERY_EVERY_S)
        finally:
            await self.run.servers.up("redis")
        self.back_at = time.monotonic()
        sources = sorted({a.source for a in answers})
        slowest = max(a.seconds for a in answers)
        self.run.notes.append(
            f"Redis SIGKILLed at {share}, away {self.back_at - killed:.1f} s "
            f"(back at {self.share()}; {self.run.sent - sent} records sent meanwhile): "
            f"{len(answers)} answers of GET /products/top, {sum(a.ok for a in answers)} as "
            f"PostgreSQL, from {' and '.join(sources)}, the slowest in {slowest * 1000:.0f} ms"
        )
        answer = await self.service.check(self.read_model)
        if not answer.ok:
            self._problem(f"with Redis back (empty), GET /products/top {answer.wrong}")
        rebuilt = await self.view_built("Redis's return", query=True)
        rebuilt_in = (
            "never" if rebuilt is None else f"{time.monotonic() - self.back_at:.2f} s after it"
        )
        self.run.notes.append(
            f"Redis back, empty: GET /products/top answered {answer.describe()}"
            f"{'' if answer.ok else ' WRONG'}; the service rebuilt the view by itself "
            f"{rebuilt_in}"
        )

    async def view_matches(self) -> None:
        """After the stream: the view's units per product in the window equal
        PostgreSQL's (polled while the aggregator catches up), then GET /products/top
        answers them from Redis."""
        ended = time.monotonic()  # the stream's end, or this fault's if that came later
        redis: list[tuple[int, int]] = []
        postgresql: list[tuple[int, int]] = []
        async with self.view() as view:
            while True:
                now = datetime.now(UTC)
                built = await view.is_built()
                redis = await view.top(now, limit=EVERY_PRODUCT)
                postgresql = [(p, u) for p, _, u in await _postgresql(self.read_model, now)]
                if built and redis == postgresql:
                    break
                if time.monotonic() - ended > MATCH_TIMEOUT_S:
                    break
                await asyncio.sleep(0.2)
        matched = time.monotonic()
        if not built:
            self._problem("at the end, the view is not marked built")
        if redis != postgresql:
            ours, theirs = dict(redis), dict(postgresql)
            differ = sorted(
                (p, ours.get(p, 0), theirs.get(p, 0))
                for p in ours.keys() | theirs.keys()
                if ours.get(p, 0) != theirs.get(p, 0)
            )
            self._problem(
                f"{MATCH_TIMEOUT_S:.0f} s after the stream, the view's units per product differ "
                f"from PostgreSQL's for {len(differ)} of {len(theirs)} products, e.g. "
                + ", ".join(f"{p}: {r} in Redis, {q} in PostgreSQL" for p, r, q in differ[:5])
            )
            return
        answer = await self.service.check(self.read_model)
        if not answer.ok:
            self._problem(f"at the end, GET /products/top {answer.wrong}")
        elif answer.source != "redis":
            self._problem(f"at the end, GET /products/top still answered from {answer.source}")
        self.run.notes.append(
            f"the view matched PostgreSQL ({len(postgresql)} products, "
            f"{sum(u for _, u in postgresql)} units) {matched - ended:.2f} s after the stream "
            f"(and the steps above) ended, {matched - self.back_at:.1f} s after Redis came "
            f"back; then GET "
            f"/products/top answered {answer.describe()}"
        )
