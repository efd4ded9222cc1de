"""The Redis view of sales behind "top products": minute and hour buckets of units sold,
keyed by the minute and hour of each order's placed time (UTC, its OrderPlaced's
`occurred_at`), net of cancellations. Per hour of placed time, a `seen` set holds a
marker per order and kind (`p:<order id>` placed, `c:<order id>` cancelled): an order's
units are added once, and taken back out once, whatever the order and number of times
its OrderPlaced and OrderCancelled arrive (one Lua script per hour applies a batch's
sales). Reads sum the window's buckets with ZUNIONSTORE (the answer is held by the
process that asked: `queries.top_products`). Keys, markers, expiry and the Redis Cluster
hash tag: docs/design.md, "Top products".

A view is built (rebuilt from PostgreSQL) on one primary: its marker names that primary's
replication id (INFO's `master_replid`, which a replica shares with its primary and a
promoted replica changes). Redis replicates asynchronously, so a replica promoted by a
failover may lack the last sales the old primary acknowledged (the aggregator's offsets
are committed, they never come again): on another replication id the view reads as
stale, not built, and the service rebuilds it (`state`).
"""

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from redis.asyncio import Redis

from shopflow.domain.top_products import (
    TOP_LIMIT,
    WINDOW,
    Sale,
    floor_hour,
    floor_minute,
    rank,
    window_end,
    window_start,
)

_EXPIRY_MARGIN = timedelta(minutes=10)

# One call per hour: KEYS are the hour's `seen` and hour keys, then the minute keys its
# sales fall in; ARGV[1] the expiry (ms, the same for every key of the hour), then per
# sale its kind (`p` or `c`), order id, the index in KEYS of its minute key, its number of
# lines, and the (product id, units) of each line. One call per hour rather than per
# minute: a batch replaying older sales (a rebuild, a consumer catching up) spreads over
# many minutes, and redis-py's cost per call was what bounded the aggregator.
#
# A placement adds its units only if its `p:` marker is new and no `c:` marker is there
# (the cancellation came first: another partition, a rebuild, a redelivery). A
# cancellation takes them back out only if its `c:` marker is new and the `p:` marker is
# there (else only the marker stays, so the placement, when it comes, adds nothing). A
# score never goes below zero: a member at 0 is removed, as if never sold.
_APPLY_SALES = """
local function take(key, units, product)
  if tonumber(redis.call('ZINCRBY', key, '-' .. units, product)) <= 0 then
    redis.call('ZREM', key, product)
  end
end
local new = 0
local touched = {}
local i = 2
while i <= #ARGV do
  local kind, order = ARGV[i], ARGV[i + 1]
  local minute = KEYS[tonumber(ARGV[i + 2])]
  local next_sale = i + 4 + 2 * tonumber(ARGV[i + 3])
  if redis.call('SADD', KEYS[1], kind .. ':' .. order) == 1 then
    new = new + 1
    if kind == 'p' then
      if redis.call('SISMEMBER', KEYS[1], 'c:' .. order) == 0 then
        touched[minute] = true
        for j = i + 4, next_sale - 1, 2 do
          redis.call('ZINCRBY', KEYS[2], ARGV[j + 1], ARGV[j])
          redis.call('ZINCRBY', minute, ARGV[j + 1], ARGV[j])
        end
      end
    elseif redis.call('SISMEMBER', KEYS[1], 'p:' .. order) == 1 then
      for j = i + 4, next_sale - 1, 2 do
        take(KEYS[2], ARGV[j + 1], ARGV[j])
        take(minute, ARGV[j + 1], ARGV[j])
      end
    end
  end
  i = next_sale
end
if new > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
  redis.call('PEXPIREAT', KEYS[2], ARGV[1])
  for key in pairs(touched) do
    redis.call('PEXPIREAT', key, ARGV[1])
  end
end
return new
"""


class ViewState(StrEnum):
    BUILT = "built"  # rebuilt on the primary that serves it, and kept by the aggregator since
    MISSING = "missing"  # never built, flushed, or Redis started again empty
    STALE = "stale"  # built on another primary: a replica promoted since may lack sales


def _hour_tag(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H")


def _expires_at(placed_at: datetime) -> datetime:
    return floor_hour(placed_at) + timedelta(hours=1) + WINDOW + _EXPIRY_MARGIN


class SalesView:
    def __init__(self, redis: Redis, *, prefix: str = "shopflow:top") -> None:
        self._redis = redis
        self._prefix = prefix
        self._apply_script = redis.register_script(_APPLY_SALES)

    def _hour_key(self, hour: datetime) -> str:
        return f"{self._prefix}:{{{_hour_tag(hour)}}}:h"

    def _minute_key(self, minute: datetime) -> str:
        return f"{self._prefix}:{{{_hour_tag(minute)}}}:m:{minute.astimezone(UTC):%M}"

    def _seen_key(self, moment: datetime) -> str:
        return f"{self._prefix}:{{{_hour_tag(moment)}}}:seen"

    @property
    def _built_key(self) -> str:
        # Versioned with the markers' format: a view built when the seen sets held event
        # ids (before cancellations) reads as not built, so the first query after the
        # upgrade rebuilds it rather than count a redelivered placement twice. 3: the
        # marker names the primary it was built on (JSON: `at`, `origin`).
        return f"{self._prefix}:built:3"

    async def apply(self, sales: Sequence[Sale], *, now: datetime) -> int:
        """Apply each sale once, in order; returns how many were new (placements and
        cancellations not seen before, whether or not they moved a count). Sales already
        out of the window are skipped: their buckets would expire on arrival. One script
        call per hour of placed time (a batch of live traffic is mostly one), pipelined."""
        by_hour: dict[datetime, list[Sale]] = {}
        for sale in sales:
            if _expires_at(sale.placed_at) > now:
                by_hour.setdefault(floor_hour(sale.placed_at), []).append(sale)
        if not by_hour:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for hour, group in by_hour.items():
                keys = [self._seen_key(hour), self._hour_key(hour)]
                key_index: dict[datetime, int] = {}
                args: list[str | int] = [int(_expires_at(hour).timestamp() * 1000)]
                for sale in group:
                    minute = floor_minute(sale.placed_at)
                    if minute not in key_index:
                        keys.append(self._minute_key(minute))
                        key_index[minute] = len(keys)  # Lua's KEYS count from 1
                    args += [sale.kind.value, sale.order_id, key_index[minute], len(sale.lines)]
                    for product_id, quantity in sale.lines:
                        args += [str(product_id), quantity]
                await self._apply_script(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    def window_keys(self, now: datetime) -> list[str]:
        """The buckets whose sum is the window at `now`."""
        start, end = window_start(now), window_end(now)
        keys: list[str] = []
        minute = start
        # Minutes up to the first whole hour, then whole hours, then the last minutes.
        while minute < end and minute.minute != 0:
            keys.append(self._minute_key(minute))
            minute += timedelta(minutes=1)
        while minute + timedelta(hours=1) <= end:
            keys.append(self._hour_key(minute))
            minute += timedelta(hours=1)
        while minute < end:
            keys.append(self._minute_key(minute))
            minute += timedelta(minutes=1)
        return keys

    async def origin(self) -> str:
        """The replication id of the primary this client writes to (`master_replid`)."""
        info = await self._redis.info("replication")
        return str(info.get("master_replid", ""))

    async def state(self) -> ViewState:
        """Built, missing, or built on another primary than the one that serves it now
        (one round trip: the marker and INFO replication, pipelined)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._built_key)
            pipe.info("replication")
            marker, info = await pipe.execute()
        if marker is None:
            return ViewState.MISSING
        try:
            built_on = json.loads(marker)["origin"]
        except (ValueError, KeyError, TypeError):
            return ViewState.MISSING
        return ViewState.BUILT if built_on == info.get("master_replid") else ViewState.STALE

    async def is_built(self) -> bool:
        return await self.state() is ViewState.BUILT

    async def top(self, now: datetime, limit: int = TOP_LIMIT) -> list[tuple[int, int]]:
        """(product id, units) of the best sellers in the window at `now`."""
        union = f"{self._prefix}:union:{uuid.uuid4().hex}"
        keys = self.window_keys(now)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zunionstore(union, keys)
            pipe.pexpire(union, 10_000)
            pipe.zrevrange(union, limit - 1, limit - 1, withscores=True)
            _, _, boundary = await pipe.execute()
        # Everything scoring at least the limit-th best, so ties at the edge are all seen
        # and broken by product id here rather than by Redis's member order.
        floor = boundary[0][1] if boundary else "-inf"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(union, floor, "+inf", withscores=True)
            pipe.delete(union)
            members, _ = await pipe.execute()
        return rank({int(member): int(score) for member, score in members}, limit)

    async def clear(self) -> None:
        """Delete the whole view (buckets, seen sets, the built marker)."""
        batch: list[bytes | str] = []
        async for key in self._redis.scan_iter(match=f"{self._prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self._redis.unlink(*batch)
                batch = []
        if batch:
            await self._redis.unlink(*batch)

    async def mark_built(self, at: datetime, origin: str | None = None) -> None:
        """Mark the view built at `at` on the primary of replication id `origin` (read
        before the rebuild cleared the view: a failover during it leaves the marker
        naming the old primary, so the view reads as stale); None: the current one."""
        if origin is None:
            origin = await self.origin()
        await self._redis.set(self._built_key, json.dumps({"at": at.isoformat(), "origin": origin}))

    # Outside the prefix's namespace on purpose: `clear` must not delete it.
    @property
    def _rebuild_lock_key(self) -> str:
        return f"{self._prefix}.rebuild-lock"

    async def try_lock_rebuild(self, seconds: int = 300) -> bool:
        """One rebuild at a time across processes."""
        return bool(await self._redis.set(self._rebuild_lock_key, "1", nx=True, ex=seconds))

    async def unlock_rebuild(self) -> None:
        await self._redis.delete(self._rebuild_lock_key)
