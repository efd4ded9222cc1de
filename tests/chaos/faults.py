"""The faults, one function each: injected while the stream is sent, each returns how
many faults it injected. A fault leaves the service able to finish: workers killed are
replaced, servers stopped are started again."""

import asyncio
import time

from shopflow.settings import FaultInjection
from tests.chaos.driver import Fault, Run

CRASH_POINTS = (
    FaultInjection.EXIT_BEFORE_DB_COMMIT,
    FaultInjection.EXIT_AFTER_DB_COMMIT,
    FaultInjection.EXIT_AFTER_PUBLISH,
)
ARMED_WORKER_TIMEOUT_S = 30.0


def calm(strikes: int) -> Fault:
    """No fault at all: the same stream on the same servers, for the waits a fault's run
    is read against (on a busy two-core machine they are seconds, not milliseconds)."""

    async def inject(_: Run) -> int:
        return 0

    return inject


def worker_kills(kills: int) -> Fault:
    """`kills` workers die, one after the other, at the chosen points (before the
    database commit, between commit and publish, between publish and offset commit:
    a worker armed to exit there joins and dies at its first batch) and at random
    moments (SIGKILL of a live worker); each is replaced. An armed worker dies only
    when commands come, so the stream goes on until the last one has."""

    async def inject(run: Run) -> int:
        run.hold_stream = True
        await run.until_sent(0.1)
        done = 0
        points: list[FaultInjection | None] = [*CRASH_POINTS, None]
        while done < kills and run.streaming:
            point = points[done % len(points)]
            if point is None:
                await asyncio.sleep(run.rng.uniform(0.2, 1.5))
                victim = run.rng.choice(run.workers.alive)
                await victim.kill()
                await run.workers.start()
                done += 1
                continue
            armed = await run.workers.start(point)
            try:
                async with asyncio.timeout(ARMED_WORKER_TIMEOUT_S):
                    code = await armed.process.wait()
            except TimeoutError:
                run.notes.append(f"{armed.name} had no batch in {ARMED_WORKER_TIMEOUT_S} s")
                await armed.kill()
                continue
            if code != 86:
                raise RuntimeError(f"{armed.name} exited {code}, not at its crash point")
            done += 1
        run.hold_stream = False
        return done

    return inject


def sigterm(stops: int) -> Fault:
    """A worker stopped with SIGTERM while its batches are in flight (it must finish or
    hand back each, and exit 0), and replaced, `stops` times."""

    async def inject(run: Run) -> int:
        for i in range(stops):
            await run.until_sent((i + 1) / (stops + 1))
            victim = run.rng.choice(run.workers.alive)
            # A replacement still starting (seconds on a busy machine) would die of the
            # signal, its handler not yet in place: no graceful stop to try. As
            # `WorkerPool.stop_all` does, let it finish its start first.
            await victim.started()
            code = await victim.stop()
            if code != 0:
                raise RuntimeError(f"{victim.name} exited {code} on SIGTERM")
            await run.workers.start()
        return stops

    return inject


def rebalance(strikes: int) -> Fault:
    """Two workers; one is SIGKILLed (its partitions wait for the session timeout), then
    another joins (the group rebalances again); `strikes` // 2 rounds of a kill and a join."""

    async def inject(run: Run) -> int:
        rounds = max(1, strikes // 2)
        for i in range(rounds):
            await run.until_sent((2 * i + 1) / (2 * rounds + 1))
            killed_at = time.monotonic()
            run.mark("kill")
            await run.workers.alive[0].kill()
            await run.until_sent((2 * i + 2) / (2 * rounds + 1))
            run.mark("join")
            await run.workers.start()
            run.notes.append(f"a worker joined {time.monotonic() - killed_at:.1f} s after the kill")
        return 2 * rounds

    return inject


def postgres_restart(restarts: int) -> Fault:
    """PostgreSQL stopped mid-stream and started again, `restarts` times: a fast
    shutdown, then a SIGKILL of the postmaster (crash recovery), alternately."""

    async def inject(run: Run) -> int:
        for i in range(restarts):
            await run.until_sent((i + 1) / (restarts + 1))
            began = time.monotonic()
            if i % 2 == 1:
                await run.servers.kill("postgres")
            else:
                await run.servers.down("postgres")
            await asyncio.sleep(1.0)
            await run.servers.up("postgres")
            run.notes.append(f"PostgreSQL away {time.monotonic() - began:.1f} s")
        return restarts

    return inject


def broker_restart(restarts: int) -> Fault:
    """The single broker SIGKILLed and started again, `restarts` times."""

    async def inject(run: Run) -> int:
        for i in range(restarts):
            await run.until_sent((i + 1) / (restarts + 1))
            began = time.monotonic()
            await run.servers.kill("kafka")
            await run.servers.up("kafka")
            run.notes.append(f"broker away {time.monotonic() - began:.1f} s")
        return restarts

    return inject


def serve_kill(kills: int) -> Fault:
    """The run's `shopflow serve` (the HTTP side; the workers consume) SIGKILLed
    mid-stream and started again on its port, `kills` times: the requests in flight get
    no answer, and their clients send them again, with the same keys, until the new one
    answers. The stream goes on until the last one is back (a start takes seconds)."""

    async def inject(run: Run) -> int:
        assert run.serve is not None
        run.hold_stream = True
        for i in range(kills):
            await run.until_sent((i + 1) / (kills + 1))
            sent = run.sent
            began = time.monotonic()
            await run.serve.kill()
            await run.serve.start()
            run.notes.append(
                f"shopflow serve SIGKILLed and answering again {time.monotonic() - began:.1f} s "
                f"later ({run.sent - sent} records sent meanwhile)"
            )
        run.hold_stream = False
        return kills

    return inject
