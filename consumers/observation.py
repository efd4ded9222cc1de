"""Everything a command topic's batches tell the outside: log lines, metrics
(`consumers.metrics`) and, when tracing is on, each command's span (`consumers.tracing`).
The pipeline says what happened; this module alone decides how it is told.

The log: each batch applied (each half of a split too: each is a transaction) writes one
line at INFO, "batch applied", with the topic, the first and last offset per partition,
the count of each outcome and of dead letters, and how long it took from decoding to its
messages handed to the producer. Each command gets a line of its own, "command
<outcome>", with its id, coordinates, key and reason: DEBUG when accepted or replayed,
INFO when rejected (a business rule said no: nothing failed), WARNING for an idempotency
conflict or `temporarily_unavailable`. Dead letters and poison are WARNING and ERROR.
"""

import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

from opentelemetry.context import Context

from shopflow.consumers import metrics
from shopflow.consumers.decoding import Undeliverable
from shopflow.consumers.offsets import OffsetSpan
from shopflow.consumers.outcomes import Outcome, OutcomeKind
from shopflow.consumers.tracing import CommandSpans, CommandTracer
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.producers.dead_letters import SourceRecord

log = logging.getLogger(__name__)

_COMMAND_LOG_LEVELS: Final = {
    OutcomeKind.ACCEPTED: logging.DEBUG,
    OutcomeKind.REPLAYED: logging.DEBUG,
    OutcomeKind.REJECTED: logging.INFO,
    OutcomeKind.CONFLICT: logging.WARNING,
    OutcomeKind.UNAVAILABLE: logging.WARNING,
}


class BatchObservation:
    """One batch handed to the pipeline, from start to end: `records` is all of it; the
    other calls may be about a part (a half of a split)."""

    def __init__(
        self, topic: str, records: Sequence[SourceRecord], tracer: CommandTracer | None
    ) -> None:
        self._topic = topic  # the contract's name, the metrics' label
        self._spans: CommandSpans | None = None if tracer is None else tracer.start(records)
        self._began = time.perf_counter()
        metrics.BATCH_SIZE.labels(topic).observe(len(records))

    def published(
        self,
        records: Sequence[SourceRecord],
        sources: Sequence[SourceRecord],
        outcomes: Sequence[Outcome],
        dead: Sequence[Undeliverable],
        started: float,
    ) -> None:
        """A transaction's results and dead letters were handed to the producer:
        `sources[i]` is the record of `outcomes[i]`; `started` is `time.perf_counter()`
        when decoding began."""
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
            metrics.DEAD_LETTERS.labels(self._topic, d.reason.value).inc()
        counts = Counter(o.kind for o in outcomes)
        for kind, count in counts.items():
            metrics.COMMANDS.labels(self._topic, kind.value).inc(count)
        if not records:  # (FastStream never hands over an empty batch; a caller might)
            return
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
                "offsets": {p: [a, b] for p, (a, b) in OffsetSpan.of(records).ranges.items()},
                "records": len(records),
                **{kind.value: counts[kind] for kind in OutcomeKind},
                "dead_lettered": len(dead),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    def result_contexts(
        self,
        sources: Sequence[SourceRecord],
        outcomes: Sequence[Outcome],
        dead: Sequence[Undeliverable],
    ) -> Iterable[Context | None]:
        """Per outcome, the trace context its result carries (None when tracing is off);
        the commands' spans and the dead letters' are told how they ended."""
        if self._spans is None:
            return itertools.repeat(None)
        for d in dead:
            self._spans.dead_lettered(d.record, d.reason, d.error)
        return self._spans.answered(sources, outcomes)

    def splitting(self, records: Sequence[SourceRecord]) -> None:
        metrics.ISOLATIONS.labels(self._topic).inc()
        log.error(
            "batch of %d records (%s) failed and will not succeed as it is; "
            "splitting it to isolate the record that fails",
            len(records),
            OffsetSpan.of(records).describe(records[0].topic),
            exc_info=True,
        )

    def poison(self, record: SourceRecord, error: str, cause: BaseException) -> None:
        """A record failed alone on every attempt: it is to be a processing_failed letter."""
        metrics.POISON_RECORDS.labels(self._topic).inc()
        log.error(
            "poison record %s[%d]@%d isolated and dead-lettered as processing_failed: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
            exc_info=cause,
        )

    def poison_dead_lettered(self, record: SourceRecord, error: str) -> None:
        metrics.DEAD_LETTERS.labels(self._topic, DeadLetterReason.PROCESSING_FAILED).inc()
        if self._spans is not None:
            self._spans.dead_lettered(record, DeadLetterReason.PROCESSING_FAILED, error)

    def poison_letter_refused(self, record: SourceRecord) -> None:
        log.error(
            "the processing_failed dead letter of %s[%d]@%d was refused; "
            "sending it without the payload",
            record.topic,
            record.partition,
            record.offset,
            exc_info=True,
        )

    def end(self, error: BaseException | None = None) -> None:
        """The batch is done; with `error`, it failed and goes back for redelivery."""
        metrics.BATCH_SECONDS.labels(self._topic).observe(time.perf_counter() - self._began)
        if isinstance(error, Exception):
            metrics.BATCH_FAILURES.labels(self._topic).inc()
        if self._spans is not None:
            self._spans.end(error)
