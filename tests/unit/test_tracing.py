"""Tracing without servers: the subscriber's parser keeps a sender's `traceparent` and
drops the headers FastStream cannot parse; the pipeline gives each command a span in its
sender's trace and its result that span's context; tracing is off unless asked for.
Against the real servers: tests/integration/test_tracing.py."""

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shopflow.consumers.applier import TRANSACTION_RETRY, BatchApplier
from shopflow.consumers.decoding import RawRecord
from shopflow.consumers.pipeline import CommandPipeline
from shopflow.consumers.subscribers import parse_with_text_headers
from shopflow.consumers.tracing import CommandTracer
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.topics import DEAD_LETTERS, ROUTES_BY_TOPIC
from shopflow.producers.publisher import Delivery, OutgoingMessage
from shopflow.producers.tracing import context_from_headers, trace_headers
from shopflow.settings import Settings, TracingMode
from shopflow.tracing import configure_tracing, tracing_enabled
from tests.support.fakes import FakeDatabase, FakeState

TOPIC = "shop.points.charge"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
TRACEPARENT = f"00-{TRACE_ID:032x}-b7ad6b7169203331-01".encode()


def _record(offset: int, headers: list[tuple[str, bytes | None]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"7", b"{}", None, 1, 2, headers)


async def test_the_parser_keeps_text_headers_and_drops_the_others() -> None:
    parser = AioKafkaBatchParser(msg_class=KafkaMessage, regex=None)
    traced = _record(
        5,
        [
            ("traceparent", TRACEPARENT),
            ("x-binary", b"\xff\xfe\x00\x9f"),
            ("x-no-value", None),
            ("content-type", b"application/json"),
        ],
    )
    plain = _record(6, [])
    with pytest.raises(UnicodeDecodeError):  # FastStream's parser alone: the batch is lost
        await parser.parse_batch((traced, plain))

    message = await parse_with_text_headers((traced, plain), parser.parse_batch)

    assert message.batch_headers == [
        {"traceparent": TRACEPARENT.decode(), "content-type": "application/json"},
        {},
    ]
    kept, passed = message.raw_message
    assert kept.headers == [("traceparent", TRACEPARENT), ("content-type", b"application/json")]
    assert passed is plain  # nothing to drop: not copied
    context = context_from_headers(kept.headers)
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == TRACE_ID


def test_a_header_that_is_not_a_trace_context_gives_none() -> None:
    assert context_from_headers([]) is None
    assert context_from_headers([("traceparent", b"not one")]) is None
    assert context_from_headers([("content-type", b"application/json")]) is None


@pytest.mark.parametrize(
    ("mode", "environ", "on"),
    [
        (TracingMode.AUTO, {}, False),
        (TracingMode.AUTO, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        (TracingMode.AUTO, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t"}, True),
        (TracingMode.AUTO, {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        (TracingMode.OFF, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        (TracingMode.ON, {}, True),
    ],
)
def test_tracing_is_off_unless_an_endpoint_or_the_setting_says_so(
    mode: TracingMode, environ: dict[str, str], on: bool
) -> None:
    assert tracing_enabled(Settings(tracing=mode), environ) is on


def test_off_installs_nothing() -> None:
    before = trace.get_tracer_provider()
    assert configure_tracing(Settings(tracing=TracingMode.OFF), "shopflow") is None
    assert trace.get_tracer_provider() is before


class Sink:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        self.sent.extend(messages)
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return Delivery([ack])


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _charge(offset: int, command_id: str, headers: list[tuple[str, bytes]]) -> RawRecord:
    value = ChargePoints(command_id=command_id, user_id=1, amount=5).model_dump_json().encode()
    return RawRecord(TOPIC, 0, offset, b"1", value, headers)


def _attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def _span_of(message: OutgoingMessage) -> trace.SpanContext:
    assert message.trace_context is not None
    return trace.get_current_span(message.trace_context).get_span_context()


async def test_each_command_continues_its_senders_trace_up_to_its_result(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    sink = Sink()
    pipeline = CommandPipeline(
        ROUTES_BY_TOPIC[TOPIC],
        BatchApplier(
            FakeDatabase(FakeState(users={1: "A"}, balances={1: 0})),
            retry=replace(TRANSACTION_RETRY, first_pause_s=0),
        ),
        sink,
        tracer=CommandTracer(provider),
    )
    with tracer.start_as_current_span("sender a") as a:
        pass
    with tracer.start_as_current_span("sender b") as b:
        pass
    records = [
        _charge(10, "from-a", trace_headers(a)),
        _charge(11, "from-b", trace_headers(b)),
        _charge(12, "from-nowhere", []),
        RawRecord(TOPIC, 0, 13, b"1", b"{not json", trace_headers(a)),
    ]

    with tracer.start_as_current_span("batch") as batch:  # FastStream's, in the worker
        await pipeline.handle(records)

    commands: dict[object, ReadableSpan] = {
        _attributes(s)["messaging.kafka.offset"]: s
        for s in exporter.get_finished_spans()
        if s.name == f"{TOPIC} process"
    }
    assert set(commands) == {10, 11, 12, 13}
    for offset, sender in ((10, a), (11, b)):
        span = commands[offset]
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == sender.get_span_context().trace_id
        assert span.parent is not None
        assert span.parent.span_id == sender.get_span_context().span_id
        assert [link.context for link in span.links] == [batch.get_span_context()]
        assert _attributes(span)["shopflow.outcome"] == "accepted"
    assert _attributes(commands[10])["shopflow.command_id"] == "from-a"
    # No context sent: a child of the batch's span.
    assert commands[12].context.trace_id == batch.get_span_context().trace_id
    assert commands[12].parent is not None
    assert commands[12].parent.span_id == batch.get_span_context().span_id
    # Dead-lettered: said so on the span, and the dead letter carries no trace context.
    assert _attributes(commands[13])["shopflow.outcome"] == "dead_lettered"
    assert _attributes(commands[13])["shopflow.reason"] == "invalid_json"
    assert commands[13].status.status_code is StatusCode.ERROR

    [letter] = [m for m in sink.sent if m.topic == DEAD_LETTERS]
    assert letter.trace_context is None
    results = [m for m in sink.sent if m.topic != DEAD_LETTERS]
    assert [_span_of(m) for m in results] == [commands[o].context for o in (10, 11, 12)]


async def test_without_a_tracer_nothing_is_traced() -> None:
    sink = Sink()
    pipeline = CommandPipeline(
        ROUTES_BY_TOPIC[TOPIC],
        BatchApplier(
            FakeDatabase(FakeState(users={1: "A"}, balances={1: 0})),
            retry=replace(TRANSACTION_RETRY, first_pause_s=0),
        ),
        sink,
    )
    await pipeline.handle([_charge(10, "c", [("traceparent", TRACEPARENT)])])
    assert [m.trace_context for m in sink.sent] == [None]
