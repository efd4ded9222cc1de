"""GET /products/top: served from the Redis view, with PostgreSQL as the fallback.

Redis down, or the view missing (never built, or flushed) or stale (built on another
primary: a Sentinel failover promoted a replica, which may lack the last sales): the
answer is computed from PostgreSQL's lines of the orders not cancelled (the same
definition, so the same answer), a warning is logged and
`shopflow_top_products_fallback_total{reason}` counts it (`redis_unavailable`,
`view_missing`, `view_stale`). A missing or stale view also starts a rebuild in the
background (one at a time; across processes a Redis lock keeps it to one), after which
Redis serves again.

An answer is held in the process for `cache_ms` (SHOPFLOW_TOP_CACHE_MS) from when its
computation began, and computed by one caller at a time: the requests that come
meanwhile wait for that computation instead of each summing the window in Redis (or, in
a fallback, in PostgreSQL) once more. A failed computation is not held: each of its
waiters gets its error, and the next request computes again. A placed order is in the
answer `cache_ms` after the aggregator applied it at the latest (CONTRACT.md: 2 s).
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from shopflow.domain.clock import Clock
from shopflow.domain.top_products import WINDOW_HOURS
from shopflow.persistence.sales_view import SalesView, ViewState
from shopflow.queries.answers import TopProductAnswer, TopProductsAnswer
from shopflow.queries.http_caching import entity_tag
from shopflow.queries.read_model import ReadModel

log = logging.getLogger(__name__)

FALLBACKS = Counter(
    "shopflow_top_products_fallback_total",
    "Top-products answers computed from PostgreSQL instead of Redis, by reason.",
    ["reason"],
)

Rebuild = Callable[[datetime], Coroutine[Any, Any, object]]


Answer = tuple[list[TopProductAnswer], str]


@dataclass(frozen=True)
class TopAnswer:
    """An answer of GET /products/top: the products, where they came from ("redis" or
    "postgresql"), and the answer's JSON and `ETag`, made once for every request that
    gets it."""

    products: list[TopProductAnswer]
    source: str
    body: bytes
    etag: str

    @classmethod
    def of(cls, products: list[TopProductAnswer], source: str) -> "TopAnswer":
        answer = TopProductsAnswer(window_hours=WINDOW_HOURS, products=products)
        body = answer.model_dump_json().encode()
        return cls(products, source, body, entity_tag(body))


class TopProducts:
    def __init__(
        self,
        view: SalesView,
        read_model: ReadModel,
        rebuild: Rebuild,
        clock: Clock,
        *,
        cache_ms: int = 0,
    ) -> None:
        self._view = view
        self._read_model = read_model
        self._rebuild = rebuild
        self._clock = clock
        self._cache_s = cache_ms / 1000
        self._held: tuple[float, TopAnswer] | None = None  # (loop time it was begun, it)
        self._computing: asyncio.Task[TopAnswer] | None = None
        self._rebuilding: asyncio.Task[object] | None = None

    async def top(self) -> Answer:
        """The best sellers now, and where the answer came from ("redis" or "postgresql")."""
        answer = await self.answer()
        return answer.products, answer.source

    async def answer(self) -> TopAnswer:
        """The answer now: held, being computed, or computed now."""
        loop = asyncio.get_running_loop()
        held = self._held
        if held is not None and loop.time() - held[0] < self._cache_s:
            return held[1]
        if self._computing is None:
            self._computing = asyncio.create_task(self._compute(loop.time()))
            self._computing.add_done_callback(self._computed)
        # Shielded: a request that goes away does not cancel the others' computation.
        return await asyncio.shield(self._computing)

    async def _compute(self, begun: float) -> TopAnswer:
        answer = TopAnswer.of(*await self._fresh())
        if self._cache_s:
            self._held = (begun, answer)
        return answer

    def _computed(self, task: "asyncio.Task[TopAnswer]") -> None:
        self._computing = None
        if not task.cancelled():
            task.exception()  # retrieved: each waiter raises it, none is left unseen

    async def _fresh(self) -> Answer:
        now = self._clock()
        try:
            state = await self._view.state()
            if state is ViewState.BUILT:
                return await self._read_model.named(await self._view.top(now)), "redis"
            reason = f"view_{state.value}"
            self._start_rebuild(now, state)
        except RedisError as error:
            reason = "redis_unavailable"
            log.warning("Redis does not answer (%s)", error)
        log.warning("top products computed from PostgreSQL: %s", reason)
        FALLBACKS.labels(reason).inc()
        return await self._read_model.top_products(now), "postgresql"

    def _start_rebuild(self, now: datetime, state: ViewState) -> None:
        if self._rebuilding is not None and not self._rebuilding.done():
            return
        log.info("the top-products view is %s: rebuilding it from PostgreSQL", state.value)
        self._rebuilding = asyncio.create_task(self._rebuild(now))
        self._rebuilding.add_done_callback(_log_failure)

    async def wait_for_rebuild(self) -> None:
        """For tests: wait for a running rebuild, if any."""
        if self._rebuilding is not None:
            await self._rebuilding


def _log_failure(task: "asyncio.Task[object]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rebuilding the top-products view failed", exc_info=task.exception())
