"""Each command's span: how a command's trace goes on through a batch of many.

FastStream gives each batch one "<topic> process" span, the root of a trace of its own
(a batch holds records of many traces). So each record gets a span of its own here, a
child of the context in its `traceparent` header (`producers.tracing`), or of the
batch's span when it has none, linked to the batch's span where the statements are. Its
result carries that span's context (`producers.publisher`): the sender's trace reads
its send, the command's processing, its result's creation. A span ends when its batch's
messages are handed to the producer or the batch fails. Built only when tracing is on.
"""

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from shopflow.consumers.outcomes import Outcome
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.producers.dead_letters import SourceRecord
from shopflow.producers.tracing import context_from_headers


class CommandSpans:
    """The spans of one batch's records, by partition and offset."""

    __slots__ = ("_spans",)

    def __init__(self, spans: dict[tuple[int, int], Span]) -> None:
        self._spans = spans

    def answered(
        self, records: Sequence[SourceRecord], outcomes: Sequence[Outcome]
    ) -> list[Context]:
        """Note each command's outcome on its span (`records[i]` gave `outcomes[i]`); the
        contexts its results are to carry, in that order."""
        contexts = []
        for record, outcome in zip(records, outcomes, strict=True):
            span = self._spans[(record.partition, record.offset)]
            span.set_attribute("shopflow.command_id", outcome.command_id)
            span.set_attribute("shopflow.outcome", outcome.kind.value)
            if outcome.reason is not None:
                span.set_attribute("shopflow.reason", outcome.reason.value)
            contexts.append(trace.set_span_in_context(span))
        return contexts

    def dead_lettered(self, record: SourceRecord, reason: DeadLetterReason, error: str) -> None:
        span = self._spans[(record.partition, record.offset)]
        span.set_attribute("shopflow.outcome", "dead_lettered")
        span.set_attribute("shopflow.reason", reason.value)
        span.set_status(StatusCode.ERROR, error)

    def end(self, error: BaseException | None = None) -> None:
        """End every span; with `error`, the batch failed and is to be redelivered."""
        for span in self._spans.values():
            if error is not None:
                span.set_status(StatusCode.ERROR, f"batch failed: {type(error).__name__}")
            span.end()


class CommandTracer:
    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    def start(self, records: Sequence[SourceRecord]) -> CommandSpans:
        """The records' spans, started; the current span is the batch's (FastStream's)."""
        batch = trace.get_current_span().get_span_context()
        links = [Link(batch)] if batch.is_valid else None
        spans = {}
        for record in records:
            attributes: dict[str, AttributeValue] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            }
            if record.key is not None:
                attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
            sent_from = context_from_headers(record.headers)
            spans[(record.partition, record.offset)] = self._tracer.start_span(
                f"{record.topic} process",
                context=sent_from,  # None: the current context, the batch's span
                kind=SpanKind.CONSUMER,
                links=links if sent_from is not None else None,
                attributes=attributes,
            )
        return CommandSpans(spans)
