"""Failover: two workers share the groups; one of them is SIGKILLed (or frozen for a
while, as a long GC pause or a stalled process would) while charges keep coming at a
steady rate. How long did a command wait for its result?

    .venv/bin/python -m tests.bench.failover                          # the defaults
    .venv/bin/python -m tests.bench.failover --session-timeouts 1500,3000,10000
    .venv/bin/python -m tests.bench.failover --freeze 1.0             # SIGSTOP 1 s, SIGCONT

Open loop: each charge has an intended send time, and its wait is its result's arrival
minus that time, so a stalled partition cannot hide its queue. Every command must be
answered, a repeated result must carry the same event id (one outcome per command), and
the balances must move by exactly what was sent. The killed worker's partitions are
served again only once the group notices it is gone (`SHOPFLOW_SESSION_TIMEOUT_MS`) and
rebalances; a frozen worker that misses its session costs a rebalance too.

Uses the servers of `make up` and the default database, on topics and groups of its own
(the topics created with the contract's ACLs as the Kafka admin). The charges are sent as
`shop-payments` (their upstream writer), the results read as `shop-reader`.
"""

import argparse
import asyncio
import os
import random
import secrets
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass

from aiokafka import TopicPartition
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import parse_event
from shopflow.contracts.principals import PAYMENTS, READER
from shopflow.contracts.topics import POINTS_CHARGE, POINTS_EVENTS, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.tables import point_balances
from shopflow.settings import Settings
from tests.bench.drain import seed
from tests.support.scratch import (
    create_scratch_topics,
    delete_scratch_topics,
    partitions_of,
    scratch_settings,
    service_env,
)

USERS = 200
SETTLE_S = 8.0  # both workers started and joined their groups before any command
BEFORE_FAULT_S = 3.0  # serving steadily before the fault


@dataclass(frozen=True)
class Failover:
    session_timeout_ms: int
    fault: str  # "kill" or "freeze <seconds>"
    rate: int
    sent: int
    answered: int
    repeated_results: int
    longest_wait_s: float
    waited_over_3s: int

    def line(self) -> str:
        return (
            f"session timeout {self.session_timeout_ms} ms, {self.fault} of one of two "
            f"workers at {self.rate}/s: longest wait {self.longest_wait_s:.2f} s, "
            f"{self.waited_over_3s} of {self.sent} waited over 3 s; {self.answered} "
            f"answered, {self.repeated_results} results repeated (same event id)"
        )


async def _balances(engine: AsyncEngine, user_ids: list[int]) -> int:
    async with engine.connect() as connection:
        total = await connection.scalar(
            select(func.coalesce(func.sum(point_balances.c.balance), 0)).where(
                point_balances.c.user_id.in_(user_ids)
            )
        )
    return int(total or 0)


async def run(
    session_timeout_ms: int,
    *,
    rate: int = 300,
    after_fault_s: float = 8.0,
    freeze_s: float | None = None,
    settings: Settings | None = None,
) -> Failover:
    """One fault (a SIGKILL, or a freeze of `freeze_s`) of one of two workers, on the
    topics and groups of `settings` (a scratch run of the default servers if None)."""
    settings = settings or scratch_settings("failover")
    topics = Topics(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    first = secrets.randbelow(2**60) + 1
    user_ids = [first + i for i in range(USERS)]
    await seed(engine, user_ids, 0, [])
    await create_scratch_topics(settings)
    env = service_env(settings, SHOPFLOW_SESSION_TIMEOUT_MS=str(session_timeout_ms))
    argv = [sys.executable, "-m", "shopflow", "worker", "--log-level", "warning"]
    workers = [await asyncio.create_subprocess_exec(*argv, env=env) for _ in range(2)]

    downstream = kafka_connection(settings, READER)
    results = downstream.consumer()
    producer = kafka_connection(settings, PAYMENTS).producer(enable_idempotence=True, linger_ms=1)
    await results.start()
    await producer.start()
    intended: dict[str, float] = {}
    arrivals: dict[str, float] = {}
    event_ids: dict[str, uuid.UUID] = {}
    repeated = 0

    async def read() -> None:
        nonlocal repeated
        topic = topics.name(POINTS_EVENTS)
        # Asked as the reader: the payments service may not describe the result topics.
        assigned = [TopicPartition(topic, p) for p in await partitions_of(downstream, topic)]
        results.assign(assigned)
        await results.seek_to_beginning(*assigned)
        while True:
            for records in (await results.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    assert record.value is not None
                    event = parse_event(record.value)
                    known = event_ids.setdefault(event.command_id, event.event_id)
                    assert known == event.event_id, f"two results for {event.command_id}"
                    if event.command_id in arrivals:
                        repeated += 1
                    else:
                        arrivals[event.command_id] = now

    reader = asyncio.create_task(read())
    await asyncio.sleep(SETTLE_S)
    fault = "kill" if freeze_s is None else f"freeze {freeze_s:g} s"
    try:
        start = time.perf_counter() + 0.2
        total = int(rate * (BEFORE_FAULT_S + after_fault_s))
        fault_at = start + BEFORE_FAULT_S
        faulted = False
        for i in range(total):
            due = start + i / rate
            if not faulted and due >= fault_at:
                faulted = True
                if freeze_s is None:
                    workers[0].send_signal(signal.SIGKILL)
                else:
                    workers[0].send_signal(signal.SIGSTOP)
                    asyncio.get_running_loop().call_later(
                        freeze_s, workers[0].send_signal, signal.SIGCONT
                    )
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = random.choice(user_ids)
            command = ChargePoints(
                command_id=f"fo-{settings.consumer_group}-{i}", user_id=user_id, amount=1
            )
            intended[command.command_id] = due
            await producer.send(
                topics.name(POINTS_CHARGE),
                command.model_dump_json().encode(),
                key=str(user_id).encode(),
            )
        deadline = time.perf_counter() + 60
        while len(arrivals.keys() & intended.keys()) < len(intended):
            if time.perf_counter() > deadline:
                break
            if reader.done():
                reader.result()  # raises what stopped it
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGCONT)
                worker.terminate()
        for worker in workers:
            await worker.wait()
        await producer.stop()
        await results.stop()
    moved = await _balances(engine, user_ids)
    await engine.dispose()
    await delete_scratch_topics(settings)

    waits = [arrivals[c] - due for c, due in intended.items() if c in arrivals]
    answered = len(waits)
    assert answered == len(intended), f"{len(intended) - answered} commands not answered"
    assert moved == len(intended), f"balances moved by {moved}, not {len(intended)}"
    return Failover(
        session_timeout_ms=session_timeout_ms,
        fault=fault,
        rate=rate,
        sent=len(intended),
        answered=answered,
        repeated_results=repeated,
        longest_wait_s=max(waits),
        waited_over_3s=sum(1 for w in waits if w > 3.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--session-timeouts", default=None, help="comma-separated, ms")
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--freeze", type=float, default=None, help="SIGSTOP seconds, not kill")
    args = parser.parse_args()
    timeouts = (
        [int(t) for t in args.session_timeouts.split(",")]
        if args.session_timeouts
        else [Settings().session_timeout_ms]
    )
    for timeout in timeouts:
        result = asyncio.run(run(timeout, rate=args.rate, freeze_s=args.freeze))
        print(result.line(), flush=True)
        if os.environ.get("BENCH_JSON"):
            print(asdict(result))


if __name__ == "__main__":
    main()
