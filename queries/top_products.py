"""GET /products/top: served from the Redis view, with PostgreSQL as the fallback.

Redis down, or the view missing (never built, or flushed) or stale (built on another
primary: a Sentinel failover promoted a replica, which may lack the last sales): the
answer is computed from PostgreSQL's lines of the orders not cancelled (the same
definition, so the same answer), a warning is logged and
`shopflow_top_products_fallback_total{reason}` counts it (`redis_unavailable`,
`view_missing`, `view_stale`). A missing or stale view also starts a rebuild in the
background (one at a time; across processes a Redis lock keeps it to one), after which
Redis serves again.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from shopflow.domain.clock import Clock
from shopflow.persistence.sales_view import SalesView, ViewState
from shopflow.queries.answers import TopProductAnswer
from shopflow.queries.read_model import ReadModel

log = logging.getLogger(__name__)

FALLBACKS = Counter(
    "shopflow_top_products_fallback_total",
    "Top-products answers computed from PostgreSQL instead of Redis, by reason.",
    ["reason"],
)

Rebuild = Callable[[datetime], Coroutine[Any, Any, object]]


class TopProducts:
    def __init__(
        self, view: SalesView, read_model: ReadModel, rebuild: Rebuild, clock: Clock
    ) -> None:
        self._view = view
        self._read_model = read_model
        self._rebuild = rebuild
        self._clock = clock
        self._rebuilding: asyncio.Task[object] | None = None

    async def top(self) -> tuple[list[TopProductAnswer], str]:
        """The best sellers now, and where the answer came from ("redis" or "postgresql")."""
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
