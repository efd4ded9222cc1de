"""Per-caller rate limits on commands over HTTP, kept in Redis so that every `shopflow
serve` process counts against the same windows.

The `limits` library does the counting (a sliding-window counter: two Redis counters per
caller and window, updated by one Lua script, the previous window's count weighted by
how much of it still overlaps), under `shopflow:ratelimit:` so the service's Redis user
(limited to `shopflow:*`) may touch them. A caller is its token's `sub`.

When Redis cannot be reached (a failover too, until the Sentinels have promoted the
replica) the request is let through, with a warning and a metric: writes are idempotent
and their consumers are protected by Kafka's own back-pressure, so losing the limit for a
Redis outage costs less than refusing every write. A promoted replica may have missed the
last counts: a caller's window may start over once.
"""

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter

from shopflow.redis_connection import rate_limit_storage
from shopflow.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "shopflow:ratelimit"

UNCHECKED = Counter(
    "shopflow_http_write_limit_unchecked_total",
    "Writes let through unchecked because Redis (the rate limits' store) did not answer.",
)


@dataclass(frozen=True)
class Refusal:
    """Over a limit: how long until the caller may write again."""

    retry_after_s: int
    limit: str


class WriteLimits:
    def __init__(self, settings: Settings) -> None:
        """The limits of SHOPFLOW_HTTP_WRITE_RATE_LIMIT (the `limits` library's notation,
        several separated by `;`, "20/second;600/minute"; every one of them applies),
        counted in the Redis of the settings (one server, or the Sentinels' primary)."""
        self._items: list[RateLimitItem] = parse_many(settings.http_write_rate_limit)
        self._storage = rate_limit_storage(settings, key_prefix=KEY_PREFIX)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    async def check(self, caller: str) -> Refusal | None:
        """Count one write of `caller`; the refusal if it is over a limit."""
        try:
            for item in self._items:
                if not await self._limiter.hit(item, caller):
                    stats = await self._limiter.get_window_stats(item, caller)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    return Refusal(wait, str(item))
        except StorageError as error:  # the store's errors, as `limits` wraps them
            UNCHECKED.inc()
            log.warning("write rate limits unchecked: Redis did not answer (%s)", error)
        return None
