"""One command topic's batch: decode, apply, publish, in that order; and the isolation
of a record that makes its batch fail.

`handle` returns once the batch's transaction committed and its results and dead letters
were handed to the producer, with their `Delivery`; the offset lane commits the offsets
after that delivery (`consumers.offset_lane`). So that one key's results go out in
order, a batch's messages are sent only once the batch before it (`after`) was
delivered; if that one was not, `PreviousUndelivered` is raised and both go back.

Poison isolation. A batch can fail in a way no per-command savepoint contains: an
exception escaping decoding, a database error at commit, a message the broker refuses.
Retried as it is, it would fail forever and stall its partition. So a batch that fails
with an error that is not transient (`consumers.failures`), after its retries, is split
in two halves, each handled in turn (offset order, so per-key order holds), and so on,
until the record that fails is alone. That record, after its own retries, becomes a
`processing_failed` dead letter naming the error; its transaction rolled back, so its
`command_id` is not spent. A transient error is never isolated: it is raised, and the
lane redelivers the batch after a pause (a server that is down is an outage to wait
out, not poison). What the batch tells the outside (logs, metrics, spans) is
`consumers.observation`'s.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shopflow.consumers.applier import Applied, BatchFailed
from shopflow.consumers.decoding import DecodedCommand, Undeliverable, decode_record
from shopflow.consumers.failures import describe, is_transient
from shopflow.consumers.observation import BatchObservation
from shopflow.consumers.tracing import CommandTracer
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.topics import DEAD_LETTERS, CommandRoute
from shopflow.domain.clock import Clock, utc_now
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.producers.dead_letters import DeadLetterLimits, SourceRecord, build_dead_letter
from shopflow.producers.publisher import DELIVERED, Delivery, MessageSink, OutgoingMessage


class Applier(Protocol):
    async def apply(
        self,
        batch: Sequence[DecodedCommand],
        dead_letters: Sequence[DeadLetterEntry] = (),
        *,
        retry_poison: bool = True,
    ) -> Applied: ...

    async def replace_dead_letter(self, entry: DeadLetterEntry) -> StoredDeadLetter: ...


class PreviousUndelivered(Exception):
    """The batch before this one on its consumer was not delivered (the cause says why):
    this batch's messages were not sent, and both batches must be redelivered."""


async def _delivered(previous: Delivery) -> None:
    try:
        await previous.wait()
    except Exception as exc:
        raise PreviousUndelivered("the batch before was not delivered") from exc


class StageFailed(Exception):
    """What a batch was doing when it failed (the cause is the error itself)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@dataclass(frozen=True)
class _Batch:
    """A batch being handled: how it is observed, and when it was received (its dead
    letters' `received_at`). Its halves, when it is split, share it."""

    seen: BatchObservation
    received_at: datetime


class CommandPipeline:
    def __init__(
        self,
        route: CommandRoute,
        applier: Applier,
        sink: MessageSink,
        *,
        limits: DeadLetterLimits | None = None,
        clock: Clock = utc_now,
        tracer: CommandTracer | None = None,
    ) -> None:
        self.route = route
        self._applier = applier
        self._sink = sink
        self._limits = limits or DeadLetterLimits()
        self._clock = clock
        self._tracer = tracer  # None when tracing is off

    async def handle(
        self,
        records: Sequence[SourceRecord],
        *,
        after: Delivery = DELIVERED,
        wait: bool = False,
        part_of: "_Batch | None" = None,
    ) -> Delivery:
        """Decode, apply and, once `after` is delivered, publish `records`: their results
        and dead letters, whose delivery is returned (awaited here only if `wait`). A
        failure that is not transient isolates the record that fails (`part_of` is the
        batch whose half this is, then).

        The whole batch gets the applier's retries; the halves of a split get none for a
        failure that is not transient (it already repeated), except a record alone,
        which gets them again before it is condemned."""
        batch = part_of or _Batch(
            BatchObservation(self.route.topic, records, self._tracer), self._clock()
        )
        try:
            try:
                started = time.perf_counter()
                commands, sources, dead, entries = self._decoded(records, batch.received_at)
                try:
                    applied = await self._applier.apply(
                        commands, entries, retry_poison=part_of is None or len(records) == 1
                    )
                except BatchFailed as exc:
                    raise StageFailed("applying") from exc.__cause__
                delivery = await self._publish(
                    batch.seen, records, sources, dead, applied, after=after, wait=wait
                )
                batch.seen.published(records, sources, applied.outcomes, dead, started)
            except PreviousUndelivered:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                delivery = await self._isolate(records, exc, batch, after)
        except BaseException as exc:
            if part_of is None:
                batch.seen.end(exc)
            raise
        if part_of is None:
            batch.seen.end()
        return delivery

    async def _isolate(
        self, records: Sequence[SourceRecord], exc: Exception, batch: "_Batch", after: Delivery
    ) -> Delivery:
        """Split `records` in halves, each handled in turn and waiting for its delivery,
        until the record that fails is alone; it becomes a dead letter."""
        await _delivered(after)  # nothing of this batch is sent before that
        if len(records) == 1:
            await self._dead_letter_poison(records[0], exc, batch)
            return DELIVERED
        batch.seen.splitting(records)
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            await self.handle(half, wait=True, part_of=batch)
        return DELIVERED

    async def _publish(
        self,
        seen: BatchObservation,
        records: Sequence[SourceRecord],
        sources: Sequence[SourceRecord],
        dead: Sequence[Undeliverable],
        applied: Applied,
        *,
        after: Delivery,
        wait: bool,
    ) -> Delivery:
        """The batch's dead letters and results handed to the producer, once `after` is
        delivered; each result carries its command's trace context."""
        contexts = seen.result_contexts(sources, applied.outcomes, dead)
        messages = [
            OutgoingMessage(DEAD_LETTERS, d.message_key, d.message_json)
            for d in applied.dead_letters
        ] + [
            OutgoingMessage(o.result_topic, o.key.encode(), o.value, context)
            for o, context in zip(applied.outcomes, contexts, strict=False)
        ]
        await _delivered(after)
        try:
            delivery = await self._sink.send_all(messages)
            if wait:
                await delivery.wait()
        except Exception as exc:
            raise StageFailed("publishing (after the commit)") from exc
        return delivery

    def _decoded(
        self, records: Sequence[SourceRecord], received_at: datetime
    ) -> tuple[
        list[DecodedCommand], list[SourceRecord], list[Undeliverable], list[DeadLetterEntry]
    ]:
        """The batch's commands with each one's record, the records that are to be dead
        letters, and those letters."""
        try:
            commands: list[DecodedCommand] = []
            sources: list[SourceRecord] = []
            dead: list[Undeliverable] = []
            for record in records:
                decoded = decode_record(self.route, record)
                if isinstance(decoded, Undeliverable):
                    dead.append(decoded)
                else:
                    commands.append(decoded)
                    sources.append(record)
            entries = [self._entry(d.record, d.reason, d.error, received_at) for d in dead]
        except Exception as exc:
            raise StageFailed("decoding") from exc
        return commands, sources, dead, entries

    def _entry(
        self,
        record: SourceRecord,
        reason: DeadLetterReason,
        error: str,
        received_at: datetime,
        *,
        with_payload: bool = True,
    ) -> DeadLetterEntry:
        built = build_dead_letter(
            record,
            reason,
            error,
            received_at,
            max_value_bytes=self._limits.max_value_bytes,
            with_payload=with_payload,
        )
        return DeadLetterEntry(built.letter, record.key, record.value, built.kafka_key, built.value)

    async def _dead_letter_poison(
        self, record: SourceRecord, exc: BaseException, batch: "_Batch"
    ) -> None:
        """Dead-letter a record that failed alone, on every attempt, as processing_failed.

        Its letter replaces any earlier one of the same record (one that could not be
        published, say). If even this letter is refused for good, it goes once more
        without the payload's bytes (the whole record stays in PostgreSQL)."""
        stage = exc.stage if isinstance(exc, StageFailed) else "handling"
        cause = exc.__cause__ if isinstance(exc, StageFailed) and exc.__cause__ else exc
        error = f"failed while {stage}, alone and on every attempt: {describe(cause)}"
        seen, received_at = batch.seen, batch.received_at
        seen.poison(record, error, cause)
        for with_payload in (True, False):
            entry = self._entry(
                record,
                DeadLetterReason.PROCESSING_FAILED,
                error,
                received_at,
                with_payload=with_payload,
            )
            stored = await self._applier.replace_dead_letter(entry)
            try:
                letter = OutgoingMessage(DEAD_LETTERS, stored.message_key, stored.message_json)
                await (await self._sink.send_all([letter])).wait()
            except Exception as publish_error:
                if is_transient(publish_error) or not with_payload:
                    raise
                seen.poison_letter_refused(record)
                continue
            break
        seen.poison_dead_lettered(record, error)
