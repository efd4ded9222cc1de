"""What the pipeline logs of a batch (no I/O: the real applier on the in-memory fakes of
`tests.support.fakes`): one INFO line for the batch with its offsets and the count of each
outcome, one line per command at its outcome's level, with no stack trace for a
business rejection."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest

from shopflow.consumers.applier import TRANSACTION_RETRY, BatchApplier
from shopflow.consumers.decoding import RawRecord
from shopflow.consumers.pipeline import CommandPipeline
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.topics import ROUTES_BY_TOPIC
from shopflow.producers.publisher import Delivery, OutgoingMessage
from tests.support.fakes import FakeDatabase, FakeState

TOPIC = "shop.points.charge"


class Sink:
    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        acks = [asyncio.get_running_loop().create_future() for _ in messages]
        for ack in acks:
            ack.set_result(None)
        return Delivery(acks)


def _charge(offset: int, command_id: str, user_id: int, amount: int) -> RawRecord:
    value = ChargePoints(command_id=command_id, user_id=user_id, amount=amount)
    return RawRecord(
        TOPIC, offset % 2, offset, str(user_id).encode(), value.model_dump_json().encode()
    )


async def test_a_batch_logs_its_outcomes_and_each_refused_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = FakeDatabase(FakeState(users={1: "A"}, balances={1: 0}))
    pipeline = CommandPipeline(
        ROUTES_BY_TOPIC[TOPIC],
        BatchApplier(database, retry=replace(TRANSACTION_RETRY, first_pause_s=0)),
        Sink(),
    )
    records = [
        _charge(10, "ok", 1, 5),
        _charge(11, "stranger", 2, 5),  # unknown_user
        _charge(12, "ok", 1, 5),  # replayed
        _charge(13, "ok", 1, 6),  # idempotency_conflict
        RawRecord(TOPIC, 0, 14, b"1", b"{not json"),
        _charge(16, "more", 1, 1),
    ]

    with caplog.at_level(logging.DEBUG, logger="shopflow.consumers.observation"):
        await pipeline.handle(records)

    lines = [r for r in caplog.records if r.name == "shopflow.consumers.observation"]
    [batch] = [r for r in lines if r.getMessage() == "batch applied"]
    assert batch.levelno == logging.INFO
    assert batch.__dict__["topic"] == TOPIC
    assert batch.__dict__["offsets"] == {0: [10, 16], 1: [11, 13]}
    counts = {
        k: batch.__dict__[k]
        for k in (
            "records",
            "accepted",
            "rejected",
            "replayed",
            "conflict",
            "unavailable",
            "dead_lettered",
        )
    }
    assert counts == {
        "records": 6,
        "accepted": 2,
        "rejected": 1,
        "replayed": 1,
        "conflict": 1,
        "unavailable": 0,
        "dead_lettered": 1,
    }
    assert batch.__dict__["duration_ms"] >= 0

    commands = [
        (
            r.getMessage(),
            r.levelno,
            r.__dict__["command_id"],
            r.__dict__["offset"],
            r.__dict__["key"],
            r.__dict__["reason"],
        )
        for r in lines
        if r.getMessage().startswith("command ")
    ]
    assert commands == [
        ("command accepted", logging.DEBUG, "ok", 10, "1", None),
        ("command rejected", logging.INFO, "stranger", 11, "2", "unknown_user"),
        ("command replayed", logging.DEBUG, "ok", 12, "1", None),
        ("command conflict", logging.WARNING, "ok", 13, "1", "idempotency_conflict"),
        ("command accepted", logging.DEBUG, "more", 16, "1", None),
    ]
    assert not any(r.exc_info for r in lines)


async def test_at_info_only_the_refused_commands_have_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = FakeDatabase(FakeState(users={1: "A"}, balances={1: 0}))
    pipeline = CommandPipeline(
        ROUTES_BY_TOPIC[TOPIC],
        BatchApplier(database, retry=replace(TRANSACTION_RETRY, first_pause_s=0)),
        Sink(),
    )

    with caplog.at_level(logging.INFO, logger="shopflow.consumers.observation"):
        await pipeline.handle([_charge(1, "a", 1, 5), _charge(2, "b", 9, 5)])

    assert [r.getMessage() for r in caplog.records] == ["command rejected", "batch applied"]
