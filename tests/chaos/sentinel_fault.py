"""redis-sentinel-failover: the Redis primary SIGKILLed mid-stream, on Redis with Sentinel
(a primary, a replica, three Sentinels: scripts/infra/redis-sentinel.sh); the Sentinels
promote the replica, every shopflow process follows it, and the view ends equal to
PostgreSQL's sales.

It runs on `cluster_servers()`, the instance with every part replicated (three Kafka
brokers; its Redis is the Sentinel set): the shop as a deployment with no single server
to lose runs it, and make chaos starts that instance once for this fault and
cluster-leader-kill. The one-broker chaos servers keep one Redis, which redis-outage
stops and starts as a whole.

Every process of the run finds the primary through the Sentinels (SHOPFLOW_REDIS_SENTINELS):
the workers (their sales aggregator writes the view), and the driver's `shopflow serve`,
which answers GET /products/top and counts the HTTP writes' rate limits in Redis. The
stream is held from the fault's first moment until the last strike is over, so each kill
comes mid-stream whatever the machine's load. Each strike, spread over the stream:
- waits until the view is marked built on the primary of the moment;
- SIGKILLs the primary (`infra.sh kill redis`: whichever node it is) and meanwhile:
  PINGs it until it refuses (its death), then asks the Sentinels until they name another
  primary; every `POLL_S` GETs /products/top (it must answer 200) and reads the serve's
  counters (its answers from PostgreSQL by reason; the writes let through unchecked
  because the rate limits' Redis did not answer); and checks GET /products/top against
  PostgreSQL over and over (`ViewChecks`, the rules of redis-outage);
- until the view is rebuilt on the promoted replica (the service finds its marker naming
  the old primary's replication id: `view_stale`) and GET /products/top answers from
  Redis again; every answer meanwhile must be 200 and PostgreSQL's;
- starts the dead node again (`infra.sh up redis`: as the new primary's replica).
At the end (`ViewChecks.view_matches`): the view's units per product equal PostgreSQL's,
and GET /products/top answers them from Redis. The notes say when the Sentinels named
the new primary, how long GET /products/top answered from PostgreSQL for want of Redis
and for a stale view, and how long the rate limits went unchecked.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from shopflow.persistence.database import create_engine
from shopflow.persistence.sales_view import ViewState
from shopflow.queries.read_model import ReadModel
from shopflow.redis_connection import RedisTarget
from tests.chaos.driver import Fault, Run
from tests.chaos.redis_fault import Service, ViewChecks

POLL_S = 0.2
ASK_TIMEOUT_S = 30.0  # for the Sentinels to name the primary before a kill
RECOVERY_TIMEOUT_S = 60.0  # from the kill, for the view rebuilt and answered from Redis
UNCHECKED_WRITES = "shopflow_http_write_limit_unchecked_total"  # shopflow.write_limits


@dataclass
class Timeline:
    """One strike. Moments are seconds from the primary's death (its first refused PING),
    or from the start of `infra.sh kill` until then."""

    began: float  # time.monotonic() when `infra.sh kill` began
    died: float | None = None  # after `began`
    killed: float | None = None  # `infra.sh kill` returned, after `began`
    promoted: float | None = None  # the Sentinels first named another primary
    failing: list[float] = field(default_factory=list)  # probes: Redis unavailable
    stale: list[float] = field(default_factory=list)  # probes: the view stale or missing
    redis_again: float | None = None  # the first probe answered from Redis after promotion
    unchecked: list[float] = field(default_factory=list)  # probes that saw writes unchecked
    unchecked_writes: int = 0
    probes: int = 0
    checks: int = 0
    built: bool = False  # the view built on the new primary

    def now(self) -> float:
        return time.monotonic() - self.began - (self.died or 0.0)

    @property
    def recovered(self) -> bool:
        return self.killed is not None and self.redis_again is not None and self.built


def _span(moments: list[float]) -> str:
    if not moments:
        return "never"
    return f"from {moments[0]:+.1f} s to {moments[-1]:+.1f} s ({len(moments)} probes)"


def _at(moment: float | None) -> str:
    return "never" if moment is None else f"{moment:+.1f} s"


async def _primary(sentinel: Sentinel, service: str) -> tuple[str, int] | None:
    try:
        address: tuple[str, int] = await sentinel.discover_master(service)
    except RedisError:
        return None
    return address


async def _answers(node: Redis) -> bool:
    try:
        return bool(await node.ping())
    except RedisError:
        return False


async def _probe(run: Run, service: Service, line: Timeline, number: int) -> None:
    """Every POLL_S: GET /products/top (it must answer 200) and the serve's counters, which
    say where each answer came from and whether writes went unchecked meanwhile."""
    fallbacks = await service.fallbacks()
    unchecked = (await service.counters(UNCHECKED_WRITES)).get("", 0.0)
    while True:
        await asyncio.sleep(POLL_S)
        status, _ = await service.top()
        now = line.now()
        line.probes += 1
        if status != 200:
            run.problems.append(
                f"redis-sentinel-failover: strike {number}, {now:+.1f} s from the primary's "
                f"death, GET /products/top answered {status or 'nothing'}"
            )
        counts = await service.fallbacks()
        grew = {r for r, n in counts.items() if n > fallbacks.get(r, 0.0)}
        fallbacks = counts
        if "redis_unavailable" in grew:
            line.failing.append(now)
        if grew & {"view_stale", "view_missing"}:
            line.stale.append(now)
        if status == 200 and not grew and line.promoted is not None:
            line.redis_again = line.redis_again if line.redis_again is not None else now
        written = (await service.counters(UNCHECKED_WRITES)).get("", 0.0)
        if written > unchecked:
            line.unchecked.append(now)
            line.unchecked_writes += int(written - unchecked)
            unchecked = written


async def _check(run: Run, checks: ViewChecks, line: Timeline, number: int) -> None:
    """GET /products/top against PostgreSQL, over and over (redis-outage's rule)."""
    while True:
        answer = await checks.service.check(checks.read_model)
        line.checks += 1
        if not answer.ok:
            run.problems.append(
                f"redis-sentinel-failover: strike {number}, {line.now():+.1f} s from the "
                f"primary's death, GET /products/top {answer.wrong}"
            )
        await asyncio.sleep(POLL_S)


async def _strike(
    run: Run, checks: ViewChecks, sentinel: Sentinel, target: RedisTarget, number: int
) -> None:
    service = checks.service
    await checks.view_built("the run's start" if number == 1 else f"strike {number - 1}")
    # Asked until they answer: on a loaded machine (the driver's loop late by seconds) a
    # question to the three may time out.
    old = None
    asked = time.monotonic()
    while old is None:
        old = await _primary(sentinel, target.service)
        if old is None and time.monotonic() - asked > ASK_TIMEOUT_S:
            raise RuntimeError(f"strike {number}: no primary named in {ASK_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.1)
    # The old primary, asked directly (as Redis's admin): its first refused PING dates
    # its death; `infra.sh kill` takes seconds of its own on a loaded machine.
    admin = run.servers.credentials().require("redis", "admin", configure="")
    node = Redis(
        host=old[0],
        port=old[1],
        username="admin",
        password=admin,
        socket_timeout=0.3,
        socket_connect_timeout=0.3,
        retry=Retry(NoBackoff(), 0),
    )
    sent = run.sent
    line = Timeline(began=time.monotonic())
    tasks = [
        asyncio.create_task(_probe(run, service, line, number)),
        asyncio.create_task(_check(run, checks, line, number)),
    ]
    run.mark("Redis primary kill")
    line.began = time.monotonic()
    killing = asyncio.create_task(run.servers.kill("redis"))
    primary: tuple[str, int] | None = old
    try:
        async with checks.view() as view:
            while not line.recovered:
                for task in tasks:
                    if task.done():
                        task.result()  # a probe that failed stops the run
                if killing.done() and line.killed is None:
                    killing.result()  # infra.sh failed: stop the run
                    line.killed = time.monotonic() - line.began
                if line.died is None:
                    if not await _answers(node):
                        line.died = time.monotonic() - line.began
                elif line.promoted is None:
                    primary = await _primary(sentinel, target.service)
                    if primary is not None and primary != old:
                        line.promoted = line.now()
                else:
                    with contextlib.suppress(RedisError):
                        line.built = await view.state() is ViewState.BUILT
                if time.monotonic() - line.began > RECOVERY_TIMEOUT_S:
                    run.problems.append(
                        f"redis-sentinel-failover: strike {number}: {RECOVERY_TIMEOUT_S:.0f} s "
                        "after the kill began, the view was not rebuilt on a new primary and "
                        f"answered from Redis (the Sentinels named {primary})"
                    )
                    break
                await asyncio.sleep(0.05)
    finally:
        for task in [*tasks, killing]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.CancelledError):
            await killing
        await node.aclose()
    checks.back_at = line.began + (line.died or 0.0) + (line.promoted or 0.0)
    if line.promoted is None:
        run.problems.append(f"redis-sentinel-failover: strike {number}: no new primary named")
    if not line.stale:
        run.problems.append(
            f"redis-sentinel-failover: strike {number}: no answer found the view built on the "
            "old primary stale (or missing): the switch went unnoticed"
        )
    restarting = time.monotonic()
    await run.servers.up("redis")  # the dead node, as the new primary's replica
    named = "?" if primary is None else f"{primary[0]}:{primary[1]}"
    run.notes.append(
        f"strike {number}: Redis primary {old[0]}:{old[1]} SIGKILLed after {sent} records of "
        f"the stream ({run.total} planned; dead {_at(line.died)} after infra.sh kill began, "
        f"which returned at {_at(line.killed)}); from its death: the Sentinels named {named} "
        f"at {_at(line.promoted)}; GET /products/top ({line.probes} probes, every "
        f"{POLL_S:g} s) answered from PostgreSQL for want of Redis {_span(line.failing)}, "
        f"for the view stale (built on the old primary) {_span(line.stale)}, from Redis "
        f"again at {_at(line.redis_again)}, the view rebuilt on the new primary; "
        f"{line.checks} answers checked against PostgreSQL meanwhile; the HTTP writes' "
        f"rate limits unchecked {_span(line.unchecked)} ({line.unchecked_writes} writes let "
        f"through); the old primary back as a replica in "
        f"{time.monotonic() - restarting:.1f} s (infra.sh up redis)"
    )


def sentinel_failover(strikes: int) -> Fault:
    """`strikes` times, spread over the stream: SIGKILL the Redis primary, follow the
    failover and the view's rebuild, start the dead node again. The stream goes on until
    the last strike is over."""

    async def inject(run: Run) -> int:
        if run.servers.sentinels is None or run.serve is None:
            raise RuntimeError("redis-sentinel-failover needs Redis with Sentinel and a serve")
        run.hold_stream = True
        target = RedisTarget.of(run.settings)
        assert target.sentinels is not None
        sentinel = Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs())
        service = Service.around(run, run.serve)
        engine = create_engine(run.settings.database_url, pool_size=2)
        checks = ViewChecks(run, service, ReadModel(engine), "redis-sentinel-failover")
        done = 0
        try:
            for i in range(strikes):
                await run.until_sent((i + 1) / (strikes + 1))
                await _strike(run, checks, sentinel, target, i + 1)
                done += 1
            run.hold_stream = False
            await run.until_sent(1.0)
            await checks.view_matches()
        finally:
            run.hold_stream = False
            await service.close()
            await engine.dispose()
            for node in sentinel.sentinels:
                await node.aclose()
        return done

    return inject
