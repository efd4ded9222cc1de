"""GET /products/top answered in front of the read side's middleware and routing.

Its answer is bytes held by the process (`TopProducts.answer`), so what a request costs
is almost all the HTTP stack around it: under wrk (`tests.bench.http_queries`, 2026-12-07)
serve spent 99 µs of CPU a request through FastAPI's route (exception handling, the body
limit, routing, dependencies), 39 µs in front of them, as much as a bare Starlette app
answering constant bytes (41 µs). This layer, outermost in the app's middleware stack,
answers a GET of that path itself: 200 with the held JSON, or 304 when `If-None-Match`
names its tag: the route's own answer (`http_caching.cacheable`), sent without the
stack (43 µs so, against B-const's 45 µs in the same smoke run).
Every other request, and this one when the answer cannot be had (the computation
failed: the database away), goes on to the app, whose route answers it the contract's
way (503 and its shape)."""

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shopflow.queries.http_caching import TOP_CACHE_CONTROL, cacheable
from shopflow.queries.top_products import TopProducts

PATH = "/products/top"


class TopFirst:
    def __init__(self, app: ASGIApp, top: TopProducts) -> None:
        self._app = app
        self._top = top

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self._app(scope, receive, send)
            return
        try:
            answer = await self._top.answer()
        except Exception:
            await self._app(scope, receive, send)  # the route answers it, errors and all
            return
        # The route's own answer (`cacheable`), sent without the stack around the route.
        response = cacheable(Request(scope), answer.body, answer.etag, TOP_CACHE_CONTROL)
        await response(scope, receive, send)
