"""OpenTelemetry tracing of a shopflow process: whether it is on, and its one set-up.

`configure_tracing` makes and installs a process's tracer provider (`shopflow serve` and
`shopflow worker` call it) and returns it to the runtime and the HTTP app; tests pass a
provider of their own and install nothing globally. Off (the default unless
OTEL_EXPORTER_OTLP_ENDPOINT is set), none of it is imported or installed. What is
traced, and how to configure it: docs/operating.md, "Traces".
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
