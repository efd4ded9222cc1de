"""The FastAPI application of the read side. Errors are `{"error": reason, "detail": ...}`:
401 without a valid bearer token and 403 for one that may not see that user (on
/users/..., /commands/... and /metrics: `queries.auth`), 404 for unknown users, products,
orders and commands (and for a command the token may not see), 422 for bad parameters.
/products/..., /health/..., /asyncapi... and /docs are public. Beside the OpenAPI
document of these queries (/docs), it can serve the AsyncAPI document of the wire
contract (/asyncapi.json, and /asyncapi rendering it), made by the composition root."""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry.trace import TracerProvider
from prometheus_client import Counter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shopflow.contracts.limits import (
    COMMAND_ID_PATTERN,
    MAX_COMMAND_ID_LENGTH,
    MAX_ENTITY_ID,
    MAX_MESSAGE_BYTES,
)
from shopflow.domain.clock import Clock, utc_now
from shopflow.queries.answers import (
    CartAnswer,
    CommandAnswer,
    ErrorAnswer,
    OrderAnswer,
    OrdersAnswer,
    PointsAnswer,
    ProductAnswer,
    StatementAnswer,
    TopProductsAnswer,
)
from shopflow.queries.auth import (
    SCOPE_METRICS,
    SCOPE_READ,
    Authenticator,
    Caller,
    Forbidden,
    TokenVerifier,
    answer_auth_errors,
    may_read_metrics,
    may_read_user,
    may_see_command,
)
from shopflow.queries.body_limit import limit_bodies
from shopflow.queries.command_results import CommandResults
from shopflow.queries.health import HealthCheck, health_routes
from shopflow.queries.history import PAGE_DEFAULT, PAGE_MAX, Unknown
from shopflow.queries.hot_reads import HotReads
from shopflow.queries.http_caching import PRIVATE, tagged
from shopflow.queries.read_model import ReadModel
from shopflow.queries.read_pages import NotFound, ReadPages, not_found_answer
from shopflow.queries.top_products import TopProducts

EntityIdPath = Annotated[int, Path(ge=1, le=MAX_ENTITY_ID)]
T = TypeVar("T")
PageLimit = Annotated[int, Query(ge=1, le=PAGE_MAX)]
PageBefore = Annotated[int | None, Query(ge=1, le=MAX_ENTITY_ID)]
CommandIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_COMMAND_ID_LENGTH, pattern=COMMAND_ID_PATTERN),
]
MAX_WAIT_MS = 30_000
_HTTP_REFUSALS = {404: "not_found", 405: "method_not_allowed"}


# In the OpenAPI document of every route that asks for a token.
# RFC 6750's challenge, on every 401 and 403 (`queries.auth`).
_CHALLENGE = {
    "WWW-Authenticate": {
        "description": 'RFC 6750: `Bearer realm="shopflow"`, with `error` when a token was sent',
        "required": True,
        "schema": {"type": "string"},
    }
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorAnswer,
        "description": "`unauthenticated`: no bearer token, or one that is refused "
        "(malformed, expired, badly signed, another issuer or audience, an unknown key); "
        "with `WWW-Authenticate: Bearer`",
        "headers": _CHALLENGE,
    },
    403: {
        "model": ErrorAnswer,
        "description": "`forbidden`: a valid token that may not see this",
        "headers": _CHALLENGE,
    },
}

# The GETs tagged by `queries.http_caching`: a client holding the answer's tag gets 304.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: `If-None-Match` named the answer's `ETag`"}
}
TAGGED_PRIVATE = AUTH_RESPONSES | NOT_MODIFIED


@dataclass(frozen=True)
class AsyncApiPages:
    """What GET /asyncapi.json and GET /asyncapi answer: the AsyncAPI document as JSON,
    and an HTML page rendering it. Called on each request (the maker caches them)."""

    document_json: Callable[[], str]
    page_html: Callable[[], str]


_NOT_FOUND_DETAIL = {
    Unknown.USER: "no such user is registered",
    Unknown.ORDER: "the user has no order of that id",
}


def _found(answer: T | Unknown) -> T:
    if isinstance(answer, Unknown):
        raise NotFound(answer.value, _NOT_FOUND_DETAIL[answer])
    return answer


# Per process: with several serve processes on one port, each is scraped on its own
# (SHOPFLOW_HTTP_PROCESS_PORT), and these say how the kernel spread the requests.
HTTP_REQUESTS = Counter(
    "shopflow_http_requests_total", "HTTP requests that reached this serve process."
)


class ReadSideApp(FastAPI):
    """FastAPI, counting its requests (`HTTP_REQUESTS`), with the hottest GETs' plain
    case answered outermost when `hot_reads` is set (`queries.hot_reads`)."""

    hot_reads: tuple[ReadPages, TokenVerifier] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.hot_reads is None else HotReads(stack, *self.hot_reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            HTTP_REQUESTS.inc()
        await super().__call__(scope, receive, send)


def create_http_app(
    read_model: ReadModel,
    readiness_checks: Mapping[str, HealthCheck],
    *,
    authenticator: Authenticator,
    lifespan: Any = None,
    clock: Clock = utc_now,
    top_products: TopProducts | None = None,
    asyncapi: AsyncApiPages | None = None,
    tracer_provider: TracerProvider | None = None,
    command_results: CommandResults | None = None,
    command_routes: APIRouter | None = None,
) -> FastAPI:
    """The read side. `authenticator` checks the bearer tokens (its keys' refresher is
    started and stopped by whoever runs the app: `lifespan`). Without `top_products`
    (the Redis view with its fallback), top products are computed from PostgreSQL on
    every request; without `asyncapi`, there is no /asyncapi. With `tracer_provider`,
    each request is traced (shopflow.tracing)."""
    authenticated = Depends(authenticator.caller)

    # The token is checked first (a sub-dependency), then `user_id`: without a valid
    # token the answer is 401 whatever the path says; with one, a bad id is 422.
    async def readable_user(user_id: EntityIdPath, caller: Caller = authenticated) -> int:
        if not may_read_user(caller, user_id):
            raise Forbidden(f"this token may not read user {user_id}", scope=SCOPE_READ)
        return user_id

    async def metrics_reader(caller: Caller = authenticated) -> None:
        if not may_read_metrics(caller):
            raise Forbidden("this token may not read the metrics", scope=SCOPE_METRICS)

    readable_user_id = Depends(readable_user)
    health = health_routes(
        readiness_checks,
        metrics_guard=[Depends(metrics_reader)],
        metrics_responses=AUTH_RESPONSES,
    )
    probes = frozenset(route.path for route in health.routes if isinstance(route, APIRoute))
    app = ReadSideApp(
        title="shopflow queries",
        description="Read side of shopflow. Commands go through Kafka (see CONTRACT.md).",
        lifespan=lifespan,
        responses={
            404: {"model": ErrorAnswer},
            422: {"model": ErrorAnswer},
            503: {
                "model": ErrorAnswer,
                "description": "`temporarily_unavailable`: the database cannot be reached "
                "(`Retry-After`)",
            },
        },
        # FastAPI's own OpenTelemetry: a server span per request (continuing a caller's
        # `traceparent`), on `tracer_provider` only, never on a global provider someone
        # else installed. No spans of its inner steps (dependencies, serialization): the
        # PostgreSQL and Redis spans under the request already say where time goes. Not
        # the probes and scrapes, every few seconds each.
        telemetry={
            "tracing": tracer_provider is not None,
            "tracer_provider": tracer_provider,
            "operation_spans": False,
            "exclude": lambda scope: scope.get("path") in probes,
        },
    )

    answer_auth_errors(app)
    limit_bodies(app, MAX_MESSAGE_BYTES)
    pages = ReadPages(read_model, top_products, clock)
    # Traced, every request goes through FastAPI, which makes its span.
    if tracer_provider is None:
        app.hot_reads = (pages, authenticator.verifier)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> Response:
        return not_found_answer(exc)

    # FastAPI's and Starlette's own refusals (a body that is not UTF-8: 400; no such path:
    # 404; a method the path does not have: 405) in the contract's error shape too, not
    # FastAPI's `{"detail": ...}`.
    @app.exception_handler(StarletteHTTPException)
    async def http_refusal(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = _HTTP_REFUSALS.get(exc.status_code, "invalid_request")
        return JSONResponse(
            {"error": reason, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    @app.get("/users/{user_id}/points", response_model=PointsAnswer, responses=TAGGED_PRIVATE)
    async def points(request: Request, user_id: int = readable_user_id) -> Response:
        return await pages.points(request, user_id)

    @app.get("/users/{user_id}/cart", response_model=CartAnswer, responses=TAGGED_PRIVATE)
    async def cart(request: Request, user_id: int = readable_user_id) -> Response:
        answer = await read_model.cart(user_id)
        if answer is None:
            raise NotFound("unknown_user", f"user {user_id} is not registered")
        return tagged(request, answer, PRIVATE)

    @app.get("/users/{user_id}/orders", response_model=OrdersAnswer, responses=TAGGED_PRIVATE)
    async def orders(
        request: Request,
        user_id: int = readable_user_id,
        limit: PageLimit = PAGE_DEFAULT,
        before: PageBefore = None,
    ) -> Response:
        """The user's orders, newest first; `before` (an order_id) pages on."""
        page = _found(await read_model.history.orders(user_id, limit=limit, before=before))
        return tagged(request, page, PRIVATE)

    @app.get(
        "/users/{user_id}/orders/{order_id}", response_model=OrderAnswer, responses=TAGGED_PRIVATE
    )
    async def order(
        request: Request, order_id: EntityIdPath, user_id: int = readable_user_id
    ) -> Response:
        return tagged(request, _found(await read_model.history.order(user_id, order_id)), PRIVATE)

    @app.get(
        "/users/{user_id}/points/transactions",
        response_model=StatementAnswer,
        responses=TAGGED_PRIVATE,
    )
    async def statement(
        request: Request,
        user_id: int = readable_user_id,
        limit: PageLimit = PAGE_DEFAULT,
        before: PageBefore = None,
    ) -> Response:
        """The user's point transactions, newest first; `before` (a transaction_id)
        pages on."""
        page = _found(await read_model.history.statement(user_id, limit=limit, before=before))
        return tagged(request, page, PRIVATE)

    @app.get(
        "/commands/{command_id}",
        response_model=CommandAnswer,
        responses={
            **AUTH_RESPONSES,
            404: {
                "model": ErrorAnswer,
                "description": "`unknown_command`: no result for that id (yet, or by the "
                "end of `wait_ms`), or a command this token may not see",
            },
        },
    )
    async def command(
        command_id: CommandIdPath,
        wait_ms: Annotated[int, Query(ge=0, le=MAX_WAIT_MS)] = 0,
        caller: Caller = authenticated,
    ) -> Response:
        """The command's result event as it was published, from the ledger; with
        `wait_ms`, answered as soon as it is stored, or 404 at the end of the wait."""
        if command_results is None:
            raise NotFound("unknown_command", "this server keeps no command results")
        if wait_ms:
            stored = await command_results.wait(command_id, wait_ms / 1000)
        else:
            stored = await command_results.stored(command_id)
        if stored is None or not may_see_command(caller, stored.command_type, stored.entity_key):
            raise NotFound("unknown_command", "no result for that command id")
        # The stored bytes, not a re-serialization: the result as it was published.
        body = f'{{"command_id":{json.dumps(command_id)},"result":{stored.result_json}}}'
        return Response(body, media_type="application/json")

    # Registered before /products/{product_id}: routes match in order, and "top" would
    # otherwise be parsed as a product id (and answered 422).
    @app.get("/products/top", response_model=TopProductsAnswer, responses=NOT_MODIFIED)
    async def top_products_route(request: Request) -> Response:
        return await pages.top(request)

    @app.get("/products/{product_id}", response_model=ProductAnswer, responses=NOT_MODIFIED)
    async def product(request: Request, product_id: EntityIdPath) -> Response:
        return await pages.product(request, product_id)

    app.include_router(health)
    if command_routes is not None:  # the writes (shopflow.gateway): guarded like the rest
        app.include_router(command_routes)

    if asyncapi is not None:
        # Out of the OpenAPI document, as /docs and /openapi.json are: they describe it.
        @app.get("/asyncapi.json", include_in_schema=False)
        async def asyncapi_document() -> Response:
            return Response(asyncapi.document_json(), media_type="application/json")

        @app.get("/asyncapi", include_in_schema=False)
        async def asyncapi_page() -> HTMLResponse:
            return HTMLResponse(asyncapi.page_html())

    _refuse_unguarded(app, authenticator)
    return app


# Paths whose every route must ask for a token: what is about a user or a command, and
# the metrics.
GUARDED = ("/users/", "/commands/", "/metrics")


def _refuse_unguarded(app: FastAPI, authenticator: Authenticator) -> None:
    """A route about a user added without the token dependency fails here, when the app
    is built, rather than serving anyone's data to anybody."""

    def asks_for_token(dependant: Dependant) -> bool:
        return any(
            d.call == authenticator.caller or asks_for_token(d) for d in dependant.dependencies
        )

    for route in app.routes:
        if (
            isinstance(route, APIRoute)
            and route.path.startswith(GUARDED)
            and not asks_for_token(route.dependant)
        ):
            raise RuntimeError(f"{route.path} must depend on the authenticator (queries.auth)")
