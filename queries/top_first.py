"""GET /products/top answered in front of the read side's middleware and routing.

Its answer is bytes held by the process (`TopProducts.answer`), so what a request costs
is almost all the HTTP stack around it: under wrk (`tests.bench.http_queries`, 2026-12-07)
serve spent 99 µs of CPU a request through FastAPI's route (exception handling, the body
limit, routing, dependencies), 39 µs in front of them, as much as a bare Starlette app
answering constant bytes (41 µs). This layer, outermost in the app's middleware stack,
answers a GET of that path itself: 200 with the held JSON, or 304 when `If-None-Match`
names its tag, both with the headers the route would give (`queries.http_caching`).
Every other request, and this one when the answer cannot be had (the computation
failed: the database away), goes on to the app, whose route answers it the contract's
way (503 and its shape)."""

from starlette.types import ASGIApp, Receive, Scope, Send

from shopflow.queries.http_caching import JSON, TOP_CACHE_CONTROL, matches
from shopflow.queries.top_products import TopAnswer, TopProducts

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
        await _answer(scope, send, answer)


async def _answer(scope: Scope, send: Send, answer: TopAnswer) -> None:
    tag = answer.etag.encode()
    if_none_match = next(
        (value for name, value in scope["headers"] if name == b"if-none-match"), None
    )
    headers = [(b"etag", tag), (b"cache-control", TOP_CACHE_CONTROL.encode())]
    if if_none_match is not None and matches(if_none_match.decode("latin-1"), answer.etag):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers += [
        (b"content-type", JSON.encode()),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
