"""GET /health/live, GET /health/ready and GET /metrics: the routes every shopflow
process serves, `shopflow serve` beside its queries (`queries.http`) and `shopflow
worker` on a port of its own (`shopflow.worker_http`). One implementation, so a probe
or a scrape reads the same on both."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, params
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

# A readiness check returns when its part answers and raises (anything) when it does not.
HealthCheck = Callable[[], Awaitable[object]]

CHECK_TIMEOUT_S = 2.0


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description='Each part: "up", or "down: " and why.')


def health_routes(
    readiness_checks: Mapping[str, HealthCheck],
    *,
    metrics_guard: Sequence[params.Depends] = (),
    metrics_responses: Mapping[int | str, dict[str, Any]] | None = None,
) -> APIRouter:
    """Live: the process answers. Ready: every check passed within 2 s, run at once; a
    503 names what did not answer. Metrics: prometheus_client's default registry.

    `metrics_guard`: dependencies run before /metrics answers (`shopflow serve`'s asks
    for a token with the scope shopflow:metrics; a worker's, on loopback, has none), and
    `metrics_responses` what they may answer instead, for the OpenAPI document. The
    probes stay open: an orchestrator's probe carries no token."""
    router = APIRouter()

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "a part did not answer"}},
    )
    async def ready() -> JSONResponse:
        async def run(check: HealthCheck) -> str:
            try:
                await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
            except Exception as exc:
                return f"down: {type(exc).__name__}: {exc}"[:200]
            return "up"

        names = list(readiness_checks)
        results = await asyncio.gather(*(run(readiness_checks[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        ok = all(v == "up" for v in status.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": status},
            status_code=200 if ok else 503,
        )

    # Documented as text: its content type is Prometheus's `text/plain; version=...`, not
    # the JSON FastAPI documents by default (the response class `Response` has no media
    # type of its own, so the 401 and 403 stay documented as JSON).
    @router.get(
        "/metrics",
        dependencies=list(metrics_guard),
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **(metrics_responses or {}),
        },
    )
    async def metrics() -> Response:
        # On the event loop, like the consumers: the scrape-time collectors (the
        # consumer lag) read the consumers' state from their own thread.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_health_app(title: str, readiness_checks: Mapping[str, HealthCheck]) -> FastAPI:
    """An application of these routes alone (`shopflow worker`'s)."""
    # Not traced: probes and scrapes, every few seconds each, are not worth a trace, and
    # FastAPI traces on a global tracer provider by default (a traced worker has one).
    app = FastAPI(
        title=title, description="Health and Prometheus metrics.", telemetry={"tracing": False}
    )
    app.include_router(health_routes(readiness_checks))
    return app
