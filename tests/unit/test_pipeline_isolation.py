"""The pipeline isolates a record that makes its batch fail for good (no I/O): the
record becomes a processing_failed dead letter, everything else is applied and answered
once, in offset order; a transient failure is never isolated."""

import asyncio
import base64
import json
import uuid
from collections.abc import Sequence

import pytest

from shopflow.consumers import pipeline as pipeline_module
from shopflow.consumers.applier import Applied, BatchFailed
from shopflow.consumers.decoding import DecodedCommand, RawRecord, decode_record
from shopflow.consumers.outcomes import Outcome, OutcomeKind
from shopflow.contracts.dead_letters import DeadLetter, DeadLetterReason, dead_letter_id
from shopflow.contracts.topics import DEAD_LETTERS, ROUTES_BY_TOPIC
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.producers.publisher import Delivery, OutgoingMessage

ROUTE = ROUTES_BY_TOPIC["shop.points.charge"]
TOPIC = "shop.points.charge"


class Poison(Exception):
    pass


class FakeApplier:
    """Applies what it is given unless it holds a poison command_id; records dead letters
    once per id, as the real store does."""

    def __init__(self, poison: set[str], transient: bool = False) -> None:
        self.poison = poison
        self.transient = transient
        self.applied: list[str] = []
        self.letters: dict[uuid.UUID, StoredDeadLetter] = {}
        self.calls = 0

    async def apply(
        self,
        batch: Sequence[DecodedCommand],
        dead_letters: Sequence[DeadLetterEntry] = (),
        *,
        retry_poison: bool = True,
    ) -> Applied:
        self.calls += 1
        if any(c.command_id in self.poison for c in batch):
            if self.transient:
                raise ConnectionResetError("database went away")
            raise BatchFailed("failed every time") from Poison("row 17 violates the rule")
        self.applied += [c.command_id for c in batch]
        stored = [
            self.letters.setdefault(
                e.letter.dead_letter_id,
                StoredDeadLetter(e.letter.dead_letter_id, e.message_key, e.message_json),
            )
            for e in dead_letters
        ]
        outcomes = [
            Outcome(
                c.command_id,
                OutcomeKind.ACCEPTED,
                ROUTE.result_topic,
                c.entity_key,
                uuid.uuid4(),
                f"ok:{c.command_id}".encode(),
            )
            for c in batch
        ]
        return Applied(outcomes, stored)

    async def replace_dead_letter(self, entry: DeadLetterEntry) -> StoredDeadLetter:
        stored = StoredDeadLetter(
            entry.letter.dead_letter_id, entry.message_key, entry.message_json
        )
        self.letters[entry.letter.dead_letter_id] = stored
        return stored


class FakeSink:
    """Refuses at once what holds `refuse` (as aiokafka's size check does); fails the
    delivery of what holds `undeliverable` (as a broker refusing it does). What it
    refuses is not published."""

    def __init__(self, refuse: bytes | None = None, undeliverable: bytes | None = None) -> None:
        self.published: list[OutgoingMessage] = []
        self.refuse = refuse
        self.undeliverable = undeliverable

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        for m in messages:
            if self.refuse is not None and self.refuse in m.value:
                raise ValueError("message refused for its size")
        acks: list[asyncio.Future[None]] = []
        for m in messages:
            ack = asyncio.get_running_loop().create_future()
            if self.undeliverable is not None and self.undeliverable in m.value:
                ack.set_exception(ValueError("the broker refused the message"))
            else:
                ack.set_result(None)
                self.published.append(m)
            acks.append(ack)
        return Delivery(acks)


def _records(count: int, *, bad_at: int | None = None) -> list[RawRecord]:
    records = []
    for offset in range(count):
        value = json.dumps({"command_id": f"c-{offset}", "user_id": 7, "amount": 1}).encode()
        if offset == bad_at:
            value = b"{not json"
        records.append(RawRecord(TOPIC, 0, 100 + offset, b"7", value))
    return records


def _dead_letters(sink: FakeSink) -> list[DeadLetter]:
    return [
        DeadLetter.model_validate_json(m.value) for m in sink.published if m.topic == DEAD_LETTERS
    ]


def _results(sink: FakeSink) -> list[str]:
    return [m.value.decode().removeprefix("ok:") for m in sink.published if m.topic != DEAD_LETTERS]


async def test_a_poison_command_is_isolated_and_everything_else_applied_in_order() -> None:
    applier, sink = FakeApplier(poison={"c-13"}), FakeSink()
    records = _records(40, bad_at=3)

    await pipeline_module.CommandPipeline(ROUTE, applier, sink).handle(records)

    expected = [f"c-{i}" for i in range(40) if i not in (3, 13)]
    assert applier.applied == expected
    assert _results(sink) == expected
    letters = _dead_letters(sink)
    assert [(d.offset, d.reason) for d in letters] == [
        (103, DeadLetterReason.INVALID_JSON),
        (113, DeadLetterReason.PROCESSING_FAILED),
    ]
    poison = letters[1]
    assert poison.dead_letter_id == dead_letter_id(TOPIC, 0, 113)
    assert "Poison: row 17 violates the rule" in poison.error
    assert "applying" in poison.error
    assert base64.b64decode(poison.payload_base64) == records[13].value
    # Bounded: the batch, then about two halves per level of the split.
    assert applier.calls <= 2 + 2 * 6 + 1


async def test_a_redelivered_batch_republishes_the_same_dead_letters_only() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink()
    pipeline = pipeline_module.CommandPipeline(ROUTE, applier, sink)
    records = _records(5, bad_at=2)

    await pipeline.handle(records)
    await pipeline.handle(records)

    letters = _dead_letters(sink)
    assert len(letters) == 2
    assert letters[0] == letters[1]  # byte for byte the letter of the first delivery


async def test_an_exception_escaping_decoding_isolates_its_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    def exploding(route: object, record: RawRecord) -> object:
        if record.offset == 105:
            raise RecursionError("maximum recursion depth exceeded")
        return decode_record(route, record)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline_module, "decode_record", exploding)
    applier, sink = FakeApplier(poison=set()), FakeSink()

    await pipeline_module.CommandPipeline(ROUTE, applier, sink).handle(_records(8))

    assert applier.applied == [f"c-{i}" for i in range(8) if i != 5]
    (letter,) = _dead_letters(sink)
    assert (letter.offset, letter.reason) == (105, DeadLetterReason.PROCESSING_FAILED)
    assert letter.error.startswith("failed while decoding")
    assert "RecursionError" in letter.error


async def test_a_message_refused_for_good_isolates_its_record() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink(refuse=b"ok:c-6")

    await pipeline_module.CommandPipeline(ROUTE, applier, sink).handle(_records(10))

    assert _results(sink) == [f"c-{i}" for i in range(10) if i != 6]
    (letter,) = _dead_letters(sink)
    assert (letter.offset, letter.reason) == (106, DeadLetterReason.PROCESSING_FAILED)
    assert "publishing" in letter.error


async def test_a_refused_dead_letter_goes_again_without_its_payload() -> None:
    records = _records(3, bad_at=1)
    # Refuse anything carrying the bad record's bytes (base64 of "{not json").
    applier = FakeApplier(poison=set())
    sink = FakeSink(refuse=base64.b64encode(b"{not json"))

    await pipeline_module.CommandPipeline(ROUTE, applier, sink).handle(records)

    (letter,) = _dead_letters(sink)
    assert letter.reason is DeadLetterReason.PROCESSING_FAILED
    assert letter.payload_truncated
    assert letter.payload_base64 == ""
    assert letter.payload_size == len(b"{not json")
    assert _results(sink) == ["c-0", "c-2"]


async def test_a_transient_failure_is_raised_for_redelivery_not_isolated() -> None:
    applier, sink = FakeApplier(poison={"c-2"}, transient=True), FakeSink()

    with pytest.raises(ConnectionResetError):
        await pipeline_module.CommandPipeline(ROUTE, applier, sink).handle(_records(4))

    assert applier.calls == 1
    assert sink.published == []


async def test_a_message_the_broker_refuses_is_isolated_when_the_batch_waits_for_it() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink(undeliverable=b"ok:c-2")
    pipeline = pipeline_module.CommandPipeline(ROUTE, applier, sink)

    await pipeline.handle(_records(4), wait=True)

    # The others were delivered on the first try and again (replays) by the halves.
    assert set(_results(sink)) == {"c-0", "c-1", "c-3"}
    (letter,) = _dead_letters(sink)
    assert (letter.offset, letter.reason) == (102, DeadLetterReason.PROCESSING_FAILED)
    assert "publishing" in letter.error


async def test_a_batch_that_does_not_wait_returns_its_failed_delivery() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink(undeliverable=b"ok:c-2")
    pipeline = pipeline_module.CommandPipeline(ROUTE, applier, sink)

    delivery = await pipeline.handle(_records(4))

    with pytest.raises(ValueError, match="refused"):
        await delivery.wait()
    assert _dead_letters(sink) == []  # the subscriber redelivers it, waiting then


async def test_a_batch_is_sent_only_once_the_batch_before_is_delivered() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink()
    pipeline = pipeline_module.CommandPipeline(ROUTE, applier, sink)
    before: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    handling = asyncio.create_task(pipeline.handle(_records(3), after=Delivery([before])))
    await asyncio.sleep(0.01)

    assert applier.applied == ["c-0", "c-1", "c-2"]  # applied meanwhile
    assert sink.published == []
    before.set_result(None)
    await (await handling).wait()
    assert _results(sink) == ["c-0", "c-1", "c-2"]


async def test_a_batch_after_an_undelivered_one_sends_nothing_and_says_so() -> None:
    applier, sink = FakeApplier(poison=set()), FakeSink()
    pipeline = pipeline_module.CommandPipeline(ROUTE, applier, sink)
    before: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    before.set_exception(ConnectionResetError("broker went away"))

    with pytest.raises(pipeline_module.PreviousUndelivered):
        await pipeline.handle(_records(3, bad_at=1), after=Delivery([before]))

    assert sink.published == []  # neither results nor dead letters, not even split
    assert applier.calls == 1
