"""OpenTelemetry tracing of a shopflow process: whether it is on, and its one set-up.

`configure_tracing` is the one place a process's tracer provider is made and installed
(`shopflow serve` and `shopflow worker` call it); it returns the provider, which the
runtime and the HTTP app are given (`Runtime.build`, `create_app`). Tests pass a
provider of their own instead, and install nothing globally.

What is traced when it is on:
- each batch of commands: FastStream's span of the batch (`shopflow.runtime`), each
  command's span in its sender's trace and its result's in turn (`consumers.tracing`,
  `producers.publisher`);
- PostgreSQL statements (asyncpg) and Redis commands, by OpenTelemetry's
  instrumentations, which patch those libraries for the whole process;
- HTTP requests of `serve`, by FastAPI itself (`queries.http`): FastAPI 0.165 has
  OpenTelemetry built in, so opentelemetry-instrumentation-fastapi would only make it
  step aside.

Off (the default unless OTEL_EXPORTER_OTLP_ENDPOINT is set), none of this is imported or
installed: no provider (the API's no-op one stays), no middleware, no patched library,
and the pipeline builds no span (it has no tracer).

Spans are exported over OTLP HTTP/protobuf, the lighter of the two exporters (the gRPC
one brings grpcio); the standard OTEL_* variables configure the exporter, the batch
processor and the sampler (the SDK reads them itself).
"""

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from shopflow.settings import Settings, TracingMode

# Either makes `SHOPFLOW_TRACING=auto` (the default) trace: where the spans go.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_enabled(settings: Settings, environ: Mapping[str, str] = os.environ) -> bool:
    if settings.tracing is TracingMode.AUTO:
        return any(environ.get(variable) for variable in ENDPOINT_VARIABLES)
    return settings.tracing is TracingMode.ON


def configure_tracing(
    settings: Settings, service_name: str, environ: Mapping[str, str] = os.environ
) -> TracerProvider | None:
    """Install the process's tracer provider, exporting over OTLP, and instrument asyncpg
    and Redis, if tracing is on; return the provider, or None (and do nothing) if off.

    `service_name` names the process in its traces unless OTEL_SERVICE_NAME does."""
    if not tracing_enabled(settings, environ):
        return None
    # Imported only when tracing is on: a process that does not trace loads none of it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK lets attributes given here override OTEL_SERVICE_NAME; the variable should win.
    named = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = SdkTracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrument_libraries(provider)
    return provider


def instrument_libraries(tracer_provider: TracerProvider) -> None:
    """Spans for every asyncpg statement and Redis command of the process, on
    `tracer_provider`. They patch the libraries' classes: once per process, undone by
    `uninstrument_libraries`."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # (AsyncPGInstrumentor's __init__ is not annotated.)
    AsyncPGInstrumentor().instrument(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=tracer_provider)


def uninstrument_libraries() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().uninstrument()
