"""Benchmark: open-loop latency of ChargePoints, from the intended send time to the
arrival of the result event (so a slow service cannot hide its queueing: no coordinated
omission), recorded with HdrHistogram; beside it, in the same run, a bare aiokafka echo
(consume, produce one result each, commit per batch) at the same rate.

    .venv/bin/python -m tests.bench.latency                    # 500/s for 10 s
    .venv/bin/python -m tests.bench.latency --rates 500,3000 --seconds 20

Uses the servers of `make up` and the default database, on topics of its own (a fresh
prefix, created with the contract's ACLs as the Kafka admin, deleted afterwards), with one
`shopflow worker` subprocess. The charges are sent as `shop-payments` (their upstream
writer), the results read as `shop-reader`; the echo runs as the service's principal, on
the contract's charge and result topics behind a prefix of its own (same ACLs).
"""

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hdrh.histogram import HdrHistogram

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.principals import PAYMENTS, READER, SERVICE
from shopflow.contracts.topics import POINTS_CHARGE, POINTS_EVENTS, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from tests.bench.ceilings import bare_loop
from tests.bench.drain import seed
from tests.support.scratch import (
    create_scratch_topics,
    delete_scratch_topics,
    scratch_settings,
    service_env,
    side_topics,
)

USERS = 1000


@dataclass(frozen=True)
class Latency:
    rate: int
    sent: int
    answered: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self, what: str) -> str:
        return (
            f"{what} at {self.rate}/s: p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms ({self.answered} of {self.sent} answered)"
        )


async def _open_loop(
    producer: AIOKafkaProducer,
    topic: str,
    values: list[tuple[str, bytes, bytes]],
    rate: int,
    arrivals: dict[str, float],
    result_reader: Callable[[], Coroutine[Any, Any, None]],
) -> Latency:
    """Send `values` (id, key, value) at `rate`, each at its intended time; the latency
    of each is its result's arrival minus that intended time."""
    intended: dict[str, float] = {}
    reader = asyncio.create_task(result_reader())
    start = time.perf_counter() + 0.2
    for i, (command_id, key, value) in enumerate(values):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        intended[command_id] = due
        await producer.send(topic, value, key=key)
    deadline = time.perf_counter() + 30

    def all_answered() -> bool:
        return len(arrivals.keys() & intended.keys()) == len(intended)

    # Polls what the reader task fills in.
    while not all_answered() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    reader.cancel()
    histogram = HdrHistogram(1, 120_000_000, 3)  # microseconds, 1 us to 120 s
    answered = 0
    for command_id, due in intended.items():
        if command_id in arrivals:
            answered += 1
            histogram.record_value(max(1, int((arrivals[command_id] - due) * 1e6)))
    return Latency(
        rate,
        len(intended),
        answered,
        histogram.get_value_at_percentile(50) / 1000,
        histogram.get_value_at_percentile(99) / 1000,
        histogram.get_max_value() / 1000,
    )


def _reader(
    consumer: AIOKafkaConsumer, arrivals: dict[str, float], id_of: Callable[[bytes], str]
) -> Callable[[], Coroutine[Any, Any, None]]:
    async def read() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        arrivals.setdefault(id_of(record.value), now)

    return read


def _command_id_of(value: bytes) -> bytes:
    # Cheaper than parsing: the command_id field, as serialized (commands and events).
    start = value.index(b'"command_id":"') + len(b'"command_id":"')
    return value[start : value.index(b'"', start)]


def _echo_result(value: bytes) -> bytes:
    return b'{"command_id":"' + _command_id_of(value) + b'"}'


async def run(rates: list[int], seconds: float) -> list[tuple[str, Latency]]:
    """(what, its latency) of the bare echo at each rate, then of shopflow at each."""
    settings = scratch_settings()
    run_id = settings.consumer_group
    topics = Topics(settings.topic_prefix)
    command_topic, result_topic = topics.name(POINTS_CHARGE), topics.name(POINTS_EVENTS)
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    first_id = secrets.randbelow(2**60) + 1
    user_ids = [first_id + i for i in range(USERS)]
    await seed(engine, user_ids, 0, [])
    await engine.dispose()
    await create_scratch_topics(settings)

    payments = kafka_connection(settings, PAYMENTS)
    producer = payments.producer(enable_idempotence=True, linger_ms=1)
    await producer.start()

    def commands(label: str, count: int) -> list[tuple[str, bytes, bytes]]:
        out = []
        for i in range(count):
            user_id = user_ids[i % USERS]
            command = ChargePoints(
                command_id=f"lat-{run_id}-{label}-{i}", user_id=user_id, amount=1
            )
            out.append(
                (command.command_id, str(user_id).encode(), command.model_dump_json().encode())
            )
        return out

    async def results_consumer(topic: str) -> AIOKafkaConsumer:
        consumer = kafka_connection(settings, READER).consumer(
            topic,
            auto_offset_reset="latest",
            group_id=f"{READER}-lat-{secrets.token_hex(3)}",  # the reader's group prefix
        )
        await consumer.start()
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        return consumer

    results: list[tuple[str, Latency]] = []

    async def measure(
        what: str,
        sender: AIOKafkaProducer,
        topic: str,
        out: AIOKafkaConsumer,
        label: str,
        rate: int,
    ) -> None:
        arrivals: dict[str, float] = {}
        measured = await _open_loop(
            sender,
            topic,
            commands(label, int(rate * seconds)),
            rate,
            arrivals,
            _reader(out, arrivals, lambda v: _command_id_of(v).decode()),
        )
        results.append((what, measured))
        print(measured.line(what), flush=True)

    echo_partitions = dict.fromkeys((POINTS_CHARGE, POINTS_EVENTS), settings.command_partitions)
    try:
        # The bare echo first, at each rate, from a charge topic to a result topic of its
        # own (the contract's ACLs on them: the same principals as shopflow's). Its clients
        # are stopped before the topics and their ACLs go.
        async with side_topics(settings, "echo", echo_partitions) as echo_topics:
            echo_source = echo_topics.name(POINTS_CHARGE)
            echo_target = echo_topics.name(POINTS_EVENTS)
            echo_producer = payments.producer(enable_idempotence=True, linger_ms=1)
            await echo_producer.start()
            stop = asyncio.Event()
            echo = asyncio.create_task(
                bare_loop(
                    kafka_connection(settings, SERVICE),
                    echo_source,
                    echo_target,
                    group=f"{settings.consumer_group}.echo",
                    result_of=_echo_result,
                    done=lambda _: stop.is_set(),
                    poll_ms=20,
                )
            )
            out = await results_consumer(echo_target)
            try:
                for rate in rates:
                    await measure(
                        "bare aiokafka echo", echo_producer, echo_source, out, f"echo{rate}", rate
                    )
                stop.set()
                await echo
            finally:
                if not echo.done():  # a measurement failed
                    echo.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await echo
                await out.stop()
                await echo_producer.stop()

        # Then shopflow, one worker process.
        worker = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "shopflow", "worker", "--log-level", "warning"),
            env=service_env(settings),
        )
        try:
            out = await results_consumer(result_topic)
            warm: dict[str, float] = {}
            await _open_loop(
                producer,
                command_topic,
                commands("warm", 200),
                100,
                warm,
                _reader(out, warm, lambda v: _command_id_of(v).decode()),
            )
            for rate in rates:
                await measure("shopflow, 1 worker", producer, command_topic, out, f"sf{rate}", rate)
            await out.stop()
        finally:
            worker.terminate()
            await worker.wait()
    finally:
        await producer.stop()
        await delete_scratch_topics(settings)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", default="500", help="comma-separated commands per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(run([int(r) for r in args.rates.split(",")], args.seconds))


if __name__ == "__main__":
    main()
