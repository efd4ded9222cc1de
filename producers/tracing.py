"""Trace context on Kafka records: the W3C `traceparent` (and `tracestate`) header that
continues a sender's trace in whoever reads the record.

The client puts its caller's context on each command it sends; the worker reads it back
from the command (`consumers.tracing`) and puts the context of the command's span on
the command's result (`producers.publisher`). Only W3C trace context travels, whatever
the global propagator carries besides (baggage, say): it is what FastStream's own
tracing reads and writes, and it keeps the headers a record gains small and bounded.

Nothing here makes a span unless a caller asks for one, and with no tracer provider
configured in the process the API's no-op tracer makes spans that cost next to nothing
and still carry their parent's context.
"""

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

# A record's headers as aiokafka reads them: a header may have no value at all.
Headers = Sequence[tuple[str, bytes | None]]

_PROPAGATOR = TraceContextTextMapPropagator()


class _HeadersGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        # The subscriber's parser passes on only headers that are valid UTF-8
        # (consumers.subscribers); a record made by hand could still hold others.
        values = [v.decode(errors="replace") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


class _HeadersSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


_GETTER = _HeadersGetter()
_SETTER = _HeadersSetter()


def context_from_headers(headers: Headers | None) -> Context | None:
    """The trace context a record's headers carry (its sender's span), or None when they
    carry none that is valid."""
    if not headers:
        return None
    context = _PROPAGATOR.extract(headers, getter=_GETTER)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def trace_headers(span: Span) -> list[tuple[str, bytes]]:
    """`traceparent` (and `tracestate`) naming `span`; none if its context is invalid (a
    no-op span with no parent)."""
    headers: list[tuple[str, bytes]] = []
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span), setter=_SETTER)
    return headers


def producer_span(
    tracer: Tracer,
    topic: str,
    operation: str,
    *,
    key: bytes | None,
    parent: Context | None = None,
    partition: int | None = None,
) -> Span:
    """A PRODUCER span for a record sent to `topic`: "<topic> <operation>", the way
    FastStream names its spans, with the semantic conventions' messaging attributes
    (`operation` is theirs: "send", or "create" for one message of a batch sent); a
    child of `parent`, or of the current span when None."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode(errors="replace")
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    return tracer.start_span(
        f"{topic} {operation}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    )
