"""One command topic's batch: decode, apply, publish, in that order; and the isolation
of a record that makes its batch fail.

Acknowledging is the subscriber's job. `handle` returns once the batch's transaction
committed and its results and dead letters were handed to the producer, with their
`Delivery`; the subscriber commits the offsets only after that delivery completed, and
meanwhile handles the next batch (`consumers.subscribers`). So that one key's results
go out in order, a batch's messages are sent only once the batch before it on the same
consumer (`after`) was delivered; if that one was not, `PreviousUndelivered` is raised
and both go back for redelivery.

Poison isolation. A batch can fail in a way no per-command savepoint contains: an
exception escaping decoding, a database error at commit, a message the broker refuses.
Retried as it is, it would fail forever and stall its partition. So when a batch fails
with an error that is not transient (`consumers.failures`) after its retries, it is
split in two halves, each handled in turn (offset order, so per-key order holds), and
so on, until the record that fails is alone. That record, after its own retries,
becomes a `processing_failed` dead letter naming the error; its transaction rolled back,
so its `command_id` is not spent. Everything else in the batch is applied and answered.
A transient error is never isolated: it is raised, and the subscriber redelivers the
batch after a pause (a server that is down is an outage to wait out, not poison). A
failure to deliver is only seen here when the batch waits for its delivery (`wait`):
the halves of a split always do, and the subscriber asks it of a redelivered batch
whose delivery failed before, so that a message Kafka refuses for good is isolated too.

The log. Each batch applied (each half of a split too: each is a transaction) writes
one line at INFO, "batch applied", whose fields are the topic, the first and last
offset per partition, the count of each outcome and of dead letters, and how long it
took from decoding to its messages handed to the producer. Each command gets a line of
its own, "command <outcome>" with its command_id, coordinates, key and reason: at DEBUG
when accepted or replayed, at INFO when rejected (a business rule said no; no stack
trace, nothing failed), at WARNING for an idempotency conflict (a sender reused an id
for another payload) or temporarily_unavailable. Both come from the applier's outcomes,
the ones that are published and counted in the metrics. FastStream's own per-batch
lines are at DEBUG (`shopflow.runtime.build_broker`).
"""

import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from opentelemetry.context import Context

from shopflow.consumers import metrics
from shopflow.consumers.applier import Applied, BatchFailed
from shopflow.consumers.decoding import DecodedCommand, Undeliverable, decode_record
from shopflow.consumers.failures import describe, is_transient
from shopflow.consumers.outcomes import Outcome, OutcomeKind
from shopflow.consumers.tracing import CommandSpans, CommandTracer
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.topics import DEAD_LETTERS, CommandRoute
from shopflow.domain.clock import Clock, utc_now
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.producers.dead_letters import DeadLetterLimits, SourceRecord, build_dead_letter
from shopflow.producers.publisher import DELIVERED, Delivery, MessageSink, OutgoingMessage

log = logging.getLogger(__name__)


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


def _offset_ranges(records: Sequence[SourceRecord]) -> dict[tuple[str, int], tuple[int, int]]:
    """The first and last offset of the records, per topic and partition, in order."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for r in records:
        first, last = ranges.get((r.topic, r.partition), (r.offset, r.offset))
        ranges[(r.topic, r.partition)] = (min(first, r.offset), max(last, r.offset))
    return dict(sorted(ranges.items()))


def _span(records: Sequence[SourceRecord]) -> str:
    """'topic[p]@first-last, ...' of the records, per partition."""
    return ", ".join(f"{t}[{p}]@{a}-{b}" for (t, p), (a, b) in _offset_ranges(records).items())


# Each command's line, at its outcome's level (see the module's docstring).
_COMMAND_LOG_LEVELS = {
    OutcomeKind.ACCEPTED: logging.DEBUG,
    OutcomeKind.REPLAYED: logging.DEBUG,
    OutcomeKind.REJECTED: logging.INFO,
    OutcomeKind.CONFLICT: logging.WARNING,
    OutcomeKind.UNAVAILABLE: logging.WARNING,
}


def _log_batch(
    records: Sequence[SourceRecord],
    sources: Sequence[SourceRecord],
    outcomes: Sequence[Outcome],
    counts: Counter[OutcomeKind],
    dead_lettered: int,
    started: float,
) -> None:
    """The batch's line and its commands' (`sources` holds each command's record, in the
    order of `outcomes`: the applier answers in the batch's order)."""
    for record, outcome in zip(sources, outcomes, strict=True):
        level = _COMMAND_LOG_LEVELS[outcome.kind]
        if log.isEnabledFor(level):
            log.log(
                level,
                "command %s",
                outcome.kind.value,
                extra={
                    "outcome": outcome.kind.value,
                    "command_id": outcome.command_id,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": outcome.key,
                    "reason": None if outcome.reason is None else outcome.reason.value,
                },
            )
    log.info(
        "batch applied",
        extra={
            "topic": records[0].topic,
            "offsets": {p: [a, b] for (_, p), (a, b) in _offset_ranges(records).items()},
            "records": len(records),
            **{kind.value: counts[kind] for kind in OutcomeKind},
            "dead_lettered": dead_lettered,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


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
        self, records: Sequence[SourceRecord], *, after: Delivery = DELIVERED, wait: bool = False
    ) -> Delivery:
        """Apply `records` and, once `after` is delivered, send their results and dead
        letters; their delivery is returned, and awaited here only if `wait`. With
        tracing on, each record has its span meanwhile (`consumers.tracing`)."""
        received_at = self._clock()
        if self._tracer is None:
            return await self._settle(
                records, received_at, retry_poison=True, after=after, wait=wait, spans=None
            )
        spans = self._tracer.start(records)
        try:
            delivery = await self._settle(
                records, received_at, retry_poison=True, after=after, wait=wait, spans=spans
            )
        except BaseException as exc:
            spans.end(exc)
            raise
        spans.end()
        return delivery

    async def _settle(
        self,
        records: Sequence[SourceRecord],
        received_at: datetime,
        *,
        retry_poison: bool,
        after: Delivery,
        wait: bool,
        spans: CommandSpans | None,
    ) -> Delivery:
        """Handle `records`, isolating any record that makes them fail for good.

        The whole batch gets the applier's retries; the halves of a split get none for a
        failure that is not transient (it already repeated), except a record alone,
        which gets them again before it is condemned. The halves wait for their
        deliveries, so a message refused for good is isolated like any other failure."""
        if len(records) == 1:
            retry_poison = True
        try:
            return await self._process(
                records, received_at, retry_poison=retry_poison, after=after, wait=wait, spans=spans
            )
        except PreviousUndelivered:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            await _delivered(after)  # nothing of this batch is sent before that
            if len(records) == 1:
                error = await self._dead_letter_poison(records[0], exc, received_at)
                if spans is not None:
                    spans.dead_lettered(records[0], DeadLetterReason.PROCESSING_FAILED, error)
                return DELIVERED
            metrics.ISOLATIONS.labels(self.route.topic).inc()
            log.error(
                "batch of %d records (%s) failed and will not succeed as it is; "
                "splitting it to isolate the record that fails",
                len(records),
                _span(records),
                exc_info=True,
            )
            middle = len(records) // 2
            for half in (records[:middle], records[middle:]):
                await self._settle(
                    half, received_at, retry_poison=False, after=DELIVERED, wait=True, spans=spans
                )
            return DELIVERED

    async def _process(
        self,
        records: Sequence[SourceRecord],
        received_at: datetime,
        *,
        retry_poison: bool,
        after: Delivery,
        wait: bool,
        spans: CommandSpans | None,
    ) -> Delivery:
        started = time.perf_counter()
        try:
            commands: list[DecodedCommand] = []
            sources: list[SourceRecord] = []  # each command's record, for the log
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

        try:
            applied = await self._applier.apply(commands, entries, retry_poison=retry_poison)
        except BatchFailed as exc:
            raise StageFailed("applying") from exc.__cause__

        messages = [
            OutgoingMessage(DEAD_LETTERS, d.message_key, d.message_json)
            for d in applied.dead_letters
        ]
        # Each result carries the context of its command's span, when tracing is on.
        traced: Iterable[Context | None] = itertools.repeat(None)
        if spans is not None:
            traced = spans.answered(sources, applied.outcomes)
            for d in dead:
                spans.dead_lettered(d.record, d.reason, d.error)
        messages += [
            OutgoingMessage(o.result_topic, o.key.encode(), o.value, context)
            for o, context in zip(applied.outcomes, traced, strict=False)
        ]
        await _delivered(after)
        try:
            delivery = await self._sink.send_all(messages)
            if wait:
                await delivery.wait()
        except Exception as exc:
            raise StageFailed("publishing (after the commit)") from exc

        for d in dead:
            log.warning(
                "dead letter from %s[%d]@%d: %s (%s)",
                d.record.topic,
                d.record.partition,
                d.record.offset,
                d.reason.value,
                d.error,
                extra={
                    "topic": d.record.topic,
                    "partition": d.record.partition,
                    "offset": d.record.offset,
                    "reason": d.reason.value,
                },
            )
            metrics.DEAD_LETTERS.labels(self.route.topic, d.reason.value).inc()
        counts = Counter(o.kind for o in applied.outcomes)
        for kind, count in counts.items():
            metrics.COMMANDS.labels(self.route.topic, kind.value).inc(count)
        if records:  # (FastStream never hands over an empty batch; a caller might)
            _log_batch(records, sources, applied.outcomes, counts, len(dead), started)
        return delivery

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
        self, record: SourceRecord, exc: BaseException, received_at: datetime
    ) -> str:
        """Dead-letter a record that failed alone, on every attempt, as processing_failed;
        the letter's error is returned.

        Its letter replaces any earlier one of the same record (one that could not be
        published, say). If even this letter is refused for good, it goes once more
        without the payload's bytes (the whole record stays in PostgreSQL)."""
        stage = exc.stage if isinstance(exc, StageFailed) else "handling"
        cause = exc.__cause__ if isinstance(exc, StageFailed) and exc.__cause__ else exc
        error = f"failed while {stage}, alone and on every attempt: {describe(cause)}"
        metrics.POISON_RECORDS.labels(self.route.topic).inc()
        log.error(
            "poison record %s[%d]@%d isolated and dead-lettered as processing_failed: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
            exc_info=cause,
        )
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
                log.error(
                    "the processing_failed dead letter of %s[%d]@%d was refused; "
                    "sending it without the payload",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc_info=True,
                )
                continue
            break
        metrics.DEAD_LETTERS.labels(self.route.topic, DeadLetterReason.PROCESSING_FAILED).inc()
        return error
