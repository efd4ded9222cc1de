"""What a real `shopflow worker` writes to stderr when it is not a terminal (a pipe, as
under a supervisor): JSON lines, one object each (shopflow.logs), with one line per
batch and one per refused command (consumers.pipeline), and none of FastStream's
per-message "Received"/"Processed" at INFO (shopflow.runtime.build_broker).

One batch of the charge topic is made on purpose: its five records are produced as one
Kafka record batch on one partition, so one fetch returns them together and one batch
applies them: an accepted charge, a charge for an unknown user (rejected), the first
charge again (replayed), its command_id with another amount (idempotency_conflict), and
a record that is not JSON (a dead letter).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shopflow.contracts.commands import ChargePoints, RegisterUser
from shopflow.contracts.events import (
    PointsCharged,
    PointsChargeRejected,
    RejectionReason,
    UserRegistered,
)
from shopflow.contracts.topics import POINTS_CHARGE, USERS_REGISTER, Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support.ids import new_command_id, new_entity_id
from tests.support.ports import free_port
from tests.support.service import isolated
from tests.support.waiting import until
from tests.support.workers import start_worker_on_port, worker_ready, worker_stopped


@dataclass
class Stderr:
    """A process's stderr, read line by line as it comes."""

    stream: asyncio.StreamReader
    lines: list[str] = field(default_factory=list)

    async def read(self) -> None:
        while line := await self.stream.readline():
            self.lines.append(line.decode())

    def events(self) -> list[dict[str, Any]]:
        """Every line so far, each parsed as one JSON object (it fails on any other)."""
        parsed = []
        for line in self.lines:
            event = json.loads(line)
            assert isinstance(event, dict), line
            parsed.append(event)
        return parsed


@dataclass
class LoggingWorker:
    settings: Settings
    topics: Topics
    stderr: Stderr


@pytest.fixture(scope="module")
async def worker(test_settings: Settings) -> AsyncIterator[LoggingWorker]:
    settings = isolated(test_settings, "worker-logs")
    port = free_port()
    process = await start_worker_on_port(settings, port, capture=True, log_level="info")
    assert process.stderr is not None
    stderr = Stderr(process.stderr)
    reading = asyncio.create_task(stderr.read())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await worker_ready(http, process)
            yield LoggingWorker(settings, Topics(settings.topic_prefix), stderr)
    finally:
        assert await worker_stopped(process) == 0
        await reading


def _of(events: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


async def test_a_batch_and_each_refused_command_are_one_json_line_each(
    worker: LoggingWorker,
) -> None:
    charge_topic = worker.topics.name(POINTS_CHARGE)
    user_id, stranger = new_entity_id(), new_entity_id()
    async with ShopflowClient(
        kafka_connection(worker.settings, OPS), topics=worker.topics
    ) as client:
        registered = await client.send_and_wait(
            RegisterUser(command_id=new_command_id("log"), user_id=user_id, name="Logs")
        )
        assert isinstance(registered, UserRegistered)

        charge = ChargePoints(command_id=new_command_id("log"), user_id=user_id, amount=100)
        unknown = ChargePoints(command_id=new_command_id("log"), user_id=stranger, amount=5)
        conflicting = charge.model_copy(update={"amount": 999})
        records = [
            (str(user_id).encode(), charge.model_dump_json().encode()),
            (str(stranger).encode(), unknown.model_dump_json().encode()),
            (str(user_id).encode(), charge.model_dump_json().encode()),
            (str(user_id).encode(), conflicting.model_dump_json().encode()),
            (b"1", b"{not json"),
        ]
        producer = kafka_connection(worker.settings, OPS).producer()
        await producer.start()
        try:
            batch = producer.create_batch()
            for key, value in records:
                batch.append(key=key, value=value, timestamp=None)
            sent = await (await producer.send_batch(batch, charge_topic, partition=0))
        finally:
            await producer.stop()
        first = sent.offset

        [charged, replayed, conflict] = await client.wait_for_results(charge.command_id, count=3)
        rejected = await client.wait_for_result(unknown.command_id)
    assert isinstance(charged, PointsCharged)
    assert replayed == charged
    assert isinstance(conflict, PointsChargeRejected)
    assert conflict.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert isinstance(rejected, PointsChargeRejected)
    assert rejected.reason is RejectionReason.UNKNOWN_USER

    async def batch_logged() -> bool:
        return bool(_of(worker.stderr.events(), "batch applied", topic=charge_topic))

    # Results are sent before the batch's line is written: give the line a moment.
    await until(batch_logged, 10, f"a 'batch applied' line for {charge_topic}")
    events = worker.stderr.events()

    [line] = _of(events, "batch applied", topic=charge_topic)
    assert line["level"] == "info"
    assert line["logger"] == "shopflow.consumers.observation"
    stamped = datetime.fromisoformat(line["timestamp"])
    assert stamped.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)
    assert line["offsets"] == {"0": [first, first + 4]}
    counts = {
        k: line[k]
        for k in ("records", "accepted", "rejected", "replayed", "conflict", "unavailable")
    }
    assert counts == {
        "records": 5,
        "accepted": 1,
        "rejected": 1,
        "replayed": 1,
        "conflict": 1,
        "unavailable": 0,
    }
    assert line["dead_lettered"] == 1
    assert isinstance(line["duration_ms"], float)
    assert 0 < line["duration_ms"] < 10_000
    [registered_batch] = _of(events, "batch applied", topic=worker.topics.name(USERS_REGISTER))
    assert (registered_batch["records"], registered_batch["accepted"]) == (1, 1)

    # The rejection: its own line at INFO, with what an operator looks for, no traceback.
    [refusal] = _of(events, "command rejected", command_id=unknown.command_id)
    assert {k: refusal[k] for k in ("level", "logger", "topic", "partition", "offset")} == {
        "level": "info",
        "logger": "shopflow.consumers.observation",
        "topic": charge_topic,
        "partition": 0,
        "offset": first + 1,
    }
    assert (refusal["key"], refusal["reason"]) == (str(stranger), "unknown_user")
    assert "exception" not in refusal
    # The conflict at WARNING; the accepted and replayed charges only at DEBUG (not here).
    [conflict_line] = _of(events, "command conflict", command_id=charge.command_id)
    assert conflict_line["level"] == "warning"
    assert conflict_line["reason"] == "idempotency_conflict"
    assert conflict_line["offset"] == first + 3
    assert not _of(events, "command accepted") + _of(events, "command replayed")
    [dead_letter] = [e for e in events if str(e.get("event")).startswith("dead letter from")]
    assert dead_letter["level"] == "warning"
    assert (dead_letter["offset"], dead_letter["reason"]) == (first + 4, "invalid_json")

    assert not any("exception" in e or "Traceback" in str(e.get("event")) for e in events)
    # FastStream's per-batch lines are at DEBUG; its other lines come through as JSON,
    # with the subscriber's topic as a field.
    assert not [e for e in events if e.get("event") in ("Received", "Processed")]
    assert [e for e in events if e.get("logger") == "shopflow.kafka" and e.get("topic")]
    [started] = [e for e in events if str(e.get("event")).startswith("worker started")]
    assert (started["logger"], started["level"]) == ("shopflow", "info")
