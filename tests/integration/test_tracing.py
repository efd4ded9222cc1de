"""Tracing against the real servers, on a service instance of the test's own built with
a tracer provider of the test's (an in-memory exporter; nothing is installed globally but
the asyncpg and Redis instrumentations, undone afterwards).

One trace runs from a sender's span through the client's send and the command's span in
the worker to the creation of its result, whose record carries that trace's
`traceparent`; the command's span links to its batch's span (FastStream's), under which
the batch's PostgreSQL statements are. A command sent with no trace context gets a span
under its batch's; a binary header beside a `traceparent` stops nothing. `serve`'s HTTP
side continues a caller's trace too."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from aiokafka import TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.app import create_app
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged, parse_event
from shopflow.contracts.topics import POINTS_CHARGE, POINTS_EVENTS
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.producers.client import ShopflowClient
from shopflow.producers.tracing import trace_headers
from shopflow.queries.auth import SCOPE_READ
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import running
from shopflow.testing.tokens import TokenSigner
from shopflow.tracing import instrument_libraries, uninstrument_libraries
from tests.support.database import user_in_database
from tests.support.ids import new_command_id
from tests.support.service import isolated

Traced = tuple[TracerProvider, InMemorySpanExporter]
UNSAMPLED_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736


@pytest.fixture
def traced() -> Iterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_libraries(provider)
    try:
        yield provider, exporter
    finally:
        uninstrument_libraries()
        provider.shutdown()


class Spans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.all = list(exporter.get_finished_spans())
        self.by_id = {s.context.span_id: s for s in self.all}

    def one(self, match: Callable[[ReadableSpan], bool]) -> ReadableSpan:
        [span] = [s for s in self.all if match(s)]
        return span

    def descends_from(self, span: ReadableSpan, ancestor: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == ancestor.context.span_id:
                return True
            above = self.by_id.get(parent.span_id)
            parent = None if above is None else above.parent
        return False


def _attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def _command_span(topic: str, command_id: str) -> Callable[[ReadableSpan], bool]:
    return lambda s: (
        s.name == f"{topic} process" and _attributes(s).get("shopflow.command_id") == command_id
    )


def _traceparent(span: ReadableSpan) -> bytes:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()


async def _result_headers(
    settings: Settings, topic: str, command_ids: set[str]
) -> dict[str, dict[str, bytes]]:
    """The headers of each command's result record on `topic` (the test's own)."""
    consumer = kafka_connection(settings, OPS).consumer()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.event_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: dict[str, dict[str, bytes]] = {}
        async with asyncio.timeout(15):
            while set(found) != command_ids:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        event = parse_event(record.value)
                        found[event.command_id] = dict(record.headers)
        return found
    finally:
        await consumer.stop()


async def _finished(exporter: InMemorySpanExporter, done: Callable[[Spans], bool]) -> Spans:
    """The spans once `done` holds of them (a batch's span ends after its handler)."""
    for _ in range(200):
        if done(spans := Spans(exporter)):
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError("the spans expected did not all end within 10 s")


async def test_a_commands_trace_goes_through_its_batch_to_its_result(
    test_settings: Settings, engine: AsyncEngine, traced: Traced
) -> None:
    provider, exporter = traced
    upstream = provider.get_tracer("an upstream service")
    settings = isolated(test_settings, "traced")
    async with (
        running(settings, tracer_provider=provider) as runtime,
        ShopflowClient(
            kafka_connection(settings, OPS), topics=runtime.topics, tracer_provider=provider
        ) as client,
    ):
        commands, results = runtime.topics.name(POINTS_CHARGE), runtime.topics.name(POINTS_EVENTS)
        user_id = await user_in_database(engine)

        def charge(label: str) -> ChargePoints:
            return ChargePoints(command_id=new_command_id(label), user_id=user_id, amount=10)

        sent, binary, bare, unsampled = (charge(c) for c in ("sent", "binary", "bare", "unsampled"))
        # The client puts the current span's context on what it sends.
        with upstream.start_as_current_span("place the charge") as sender:
            assert isinstance(await client.send_and_wait(sent), PointsCharged)
        # Another sender's context, beside a header FastStream's parser could not read.
        with upstream.start_as_current_span("another sender") as other:
            headers = [*trace_headers(other), ("x-binary", b"\xff\xfe\x00\x9f")]
        key = str(user_id).encode()
        await client.send_raw(commands, key, binary.model_dump_json().encode(), headers=headers)
        await client.send_raw(commands, key, bare.model_dump_json().encode(), headers=[])
        # A trace its sender does not record (sampled out): none of its spans is either.
        not_recorded = [("traceparent", f"00-{UNSAMPLED_TRACE:032x}-00f067aa0ba902b7-00".encode())]
        await client.send_raw(
            commands, key, unsampled.model_dump_json().encode(), headers=not_recorded
        )
        for later in (binary, bare, unsampled):
            assert isinstance(await client.wait_for_result(later.command_id), PointsCharged)
        records = await _result_headers(
            settings, results, {c.command_id for c in (sent, binary, bare, unsampled)}
        )

    def batch_spans_ended(spans: Spans) -> bool:
        linked = [spans.one(_command_span(commands, c.command_id)).links for c in (sent, binary)]
        return all(not links or links[0].context.span_id in spans.by_id for links in linked)

    spans = await _finished(exporter, batch_spans_ended)
    trace_id = sender.get_span_context().trace_id

    # The sender's span -> the client's send -> the command's span -> its result's.
    send = spans.one(lambda s: s.name == f"{commands} send" and s.context.trace_id == trace_id)
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == sender.get_span_context().span_id
    command = spans.one(_command_span(commands, sent.command_id))
    assert command.kind is SpanKind.CONSUMER
    assert command.context.trace_id == trace_id
    assert command.parent is not None
    assert command.parent.span_id == send.context.span_id
    assert _attributes(command)["shopflow.outcome"] == "accepted"
    result = spans.one(lambda s: s.parent is not None and s.parent == command.context)
    assert (result.name, result.kind) == (f"{results} create", SpanKind.PRODUCER)
    assert records[sent.command_id]["traceparent"] == _traceparent(result)

    # The command's span links to its batch's, FastStream's, under which its statements are.
    [link] = command.links
    batch = spans.by_id[link.context.span_id]
    assert batch.name == f"{commands} process"
    assert batch.instrumentation_scope is not None
    assert batch.instrumentation_scope.name == "opentelemetry.instrumentation.faststream"
    assert batch.context.trace_id != trace_id  # a batch is a trace of its own
    statements = [
        str(_attributes(s).get("db.statement"))
        for s in spans.all
        if _attributes(s).get("db.system") == "postgresql" and spans.descends_from(s, batch)
    ]
    assert any("point_balances" in statement for statement in statements), statements

    # The other sender's trace went on too, its binary header dropped on the way.
    other_command = spans.one(_command_span(commands, binary.command_id))
    assert other_command.context.trace_id == other.get_span_context().trace_id
    assert records[binary.command_id]["traceparent"].startswith(
        f"00-{other.get_span_context().trace_id:032x}-".encode()
    )

    # No context sent: the command's span is its batch's child, and so is its result's.
    bare_command = spans.one(_command_span(commands, bare.command_id))
    assert bare_command.links == ()
    bare_batch = spans.one(
        lambda s: (
            bare_command.parent is not None and s.context.span_id == bare_command.parent.span_id
        )
    )
    assert bare_batch.instrumentation_scope is not None
    assert bare_batch.instrumentation_scope.name == "opentelemetry.instrumentation.faststream"
    assert records[bare.command_id]["traceparent"].startswith(
        f"00-{bare_batch.context.trace_id:032x}-".encode()
    )

    # Not recorded: no span of its trace, but its result still carries it on.
    assert not [s for s in spans.all if s.context.trace_id == UNSAMPLED_TRACE]
    traceparent = records[unsampled.command_id]["traceparent"]
    assert traceparent.startswith(f"00-{UNSAMPLED_TRACE:032x}-".encode())
    assert traceparent.endswith(b"-00")


@pytest.fixture
async def traced_http(
    service: Runtime, traced: Traced, shopflow_token: TokenSigner
) -> AsyncIterator[httpx.AsyncClient]:
    """`serve`'s HTTP side (`create_app`, not consuming), traced on the test's provider,
    asked with a token that may read every user."""
    app = create_app(
        shopflow_token.settings_for(service.settings),
        consume=False,
        prepare_first=False,
        tracer_provider=traced[0],
    )
    transport = httpx.ASGITransport(app=app)
    headers = shopflow_token.headers(scopes=[SCOPE_READ])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shopflow", headers=headers) as http,
    ):
        yield http


async def test_a_query_continues_its_callers_trace(
    traced_http: httpx.AsyncClient, traced: Traced, engine: AsyncEngine
) -> None:
    provider, exporter = traced
    user_id = await user_in_database(engine)
    with provider.get_tracer("a caller").start_as_current_span("ask") as caller:
        headers = dict((k, v.decode()) for k, v in trace_headers(caller))
    response = await traced_http.get(f"/users/{user_id}/points", headers=headers)
    assert response.json() == {"user_id": user_id, "balance": 0}
    probe = await traced_http.get("/health/live")
    assert probe.status_code == 200

    spans = Spans(exporter)
    trace_id = caller.get_span_context().trace_id
    server = spans.one(lambda s: s.kind is SpanKind.SERVER and s.context.trace_id == trace_id)
    assert server.name == "GET /users/{user_id}/points"
    assert server.parent is not None
    assert server.parent.span_id == caller.get_span_context().span_id
    assert any(
        _attributes(s).get("db.system") == "postgresql" and spans.descends_from(s, server)
        for s in spans.all
    )
    assert not [s for s in spans.all if s.kind is SpanKind.SERVER and "/health" in s.name]
    assert trace.get_tracer_provider() is not provider  # nothing installed globally
