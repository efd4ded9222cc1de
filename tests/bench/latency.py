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
from shopflow.settings import Settings
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


def charge_commands(
    run_id: str, user_ids: list[int], label: str, count: int
) -> list[tuple[str, bytes, bytes]]:
    """`count` ChargePoints of 1 point, the users taking turns: (command id, key, value)."""
    out = []
    for i in range(count):
        user_id = user_ids[i % len(user_ids)]
        command = ChargePoints(command_id=f"lat-{run_id}-{label}-{i}", user_id=user_id, amount=1)
        out.append((command.command_id, str(user_id).encode(), command.model_dump_json().encode()))
    return out


async def results_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A reader of `topic`'s results from now on (as `shop-reader`), assigned already."""
    consumer = kafka_connection(settings, READER).consumer(
        topic,
        auto_offset_reset="latest",
        group_id=f"{READER}-lat-{secrets.token_hex(3)}",  # the reader's group prefix
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    return consumer


async def measure_open_loop(
    settings: Settings,
    user_ids: list[int],
    sender: AIOKafkaProducer,
    topic: str,
    out: AIOKafkaConsumer,
    label: str,
    rate: int,
    seconds: float,
) -> Latency:
    """ChargePoints sent to `topic` at `rate` for `seconds`, their results read by `out`."""
    arrivals: dict[str, float] = {}
    return await _open_loop(
        sender,
        topic,
        charge_commands(settings.consumer_group, user_ids, label, int(rate * seconds)),
        rate,
        arrivals,
        _reader(out, arrivals, lambda v: _command_id_of(v).decode()),
    )


class KafkaCharges:
    """shopflow's own Kafka path, open loop: ChargePoints sent to the run's charge topic
    as `shop-payments` (their upstream writer), results read as `shop-reader`, to
    whatever workers consume the run's topics."""

    def __init__(self, settings: Settings, user_ids: list[int]) -> None:
        self._settings = settings
        self._user_ids = user_ids
        topics = Topics(settings.topic_prefix)
        self._commands, self._results = topics.name(POINTS_CHARGE), topics.name(POINTS_EVENTS)
        self._producer = kafka_connection(settings, PAYMENTS).producer(
            enable_idempotence=True, linger_ms=1
        )
        self._out: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self._producer.start()
        self._out = await results_consumer(self._settings, self._results)

    async def stop(self) -> None:
        if self._out is not None:
            await self._out.stop()
        await self._producer.stop()

    async def measure(self, label: str, rate: int, seconds: float) -> Latency:
        assert self._out is not None, "start() first"
        return await measure_open_loop(
            self._settings,
            self._user_ids,
            self._producer,
            self._commands,
            self._out,
            label,
            rate,
            seconds,
        )


async def run(rates: list[int], seconds: float) -> list[tuple[str, Latency]]:
    """(what, its latency) of the bare echo at each rate, then of shopflow at each."""
    settings = scratch_settings()
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    first_id = secrets.randbelow(2**60) + 1
    user_ids = [first_id + i for i in range(USERS)]
    await seed(engine, user_ids, 0, [])
    await engine.dispose()
    await create_scratch_topics(settings)

    results: list[tuple[str, Latency]] = []

    def report(what: str, measured: Latency) -> None:
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
            echo_producer = kafka_connection(settings, PAYMENTS).producer(
                enable_idempotence=True, linger_ms=1
            )
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
            out = await results_consumer(settings, echo_target)
            try:
                for rate in rates:
                    report(
                        "bare aiokafka echo",
                        await measure_open_loop(
                            settings,
                            user_ids,
                            echo_producer,
                            echo_source,
                            out,
                            f"echo{rate}",
                            rate,
                            seconds,
                        ),
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
        charges = KafkaCharges(settings, user_ids)
        try:
            await charges.start()
            await charges.measure("warm", 100, 2.0)
            for rate in rates:
                report("shopflow, 1 worker", await charges.measure(f"sf{rate}", rate, seconds))
        finally:
            await charges.stop()
            worker.terminate()
            await worker.wait()
    finally:
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
