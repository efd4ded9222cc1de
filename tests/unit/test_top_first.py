"""GET /products/top answered in front of the app (`queries.top_first.TopFirst`): the
held answer's bytes and headers, 304 for its tag, and everything else, failures
included, left to the app."""

from typing import cast

import httpx
from starlette.types import Receive, Scope, Send

from shopflow.queries.answers import TopProductAnswer
from shopflow.queries.http_caching import TOP_CACHE_CONTROL
from shopflow.queries.top_first import TopFirst
from shopflow.queries.top_products import TopAnswer, TopProducts

ANSWER = TopAnswer.of([TopProductAnswer(product_id=7, name="Mug", units_sold=3)], "redis")


class FakeTop:
    def __init__(self, failing: bool = False) -> None:
        self.failing = failing

    async def answer(self) -> TopAnswer:
        if self.failing:
            raise ConnectionRefusedError("the database is away")
        return ANSWER


class App:
    """The app behind: answers 299 to whatever reaches it, and counts it."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


def _client(app: App, top: FakeTop) -> httpx.AsyncClient:
    front = TopFirst(app, cast(TopProducts, top))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=front), base_url="http://s")


async def test_a_get_of_top_is_the_held_answer_with_its_headers() -> None:
    app = App()
    async with _client(app, FakeTop()) as http:
        answer = await http.get("/products/top", params={"ignored": "1"})
    assert answer.status_code == 200
    assert answer.content == ANSWER.body
    assert answer.json() == {
        "window_hours": 72,
        "products": [{"product_id": 7, "name": "Mug", "units_sold": 3}],
    }
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["etag"] == ANSWER.etag
    assert answer.headers["cache-control"] == TOP_CACHE_CONTROL
    assert app.reached == []


async def test_a_client_holding_the_tag_gets_304_without_a_body() -> None:
    app = App()
    async with _client(app, FakeTop()) as http:
        answer = await http.get("/products/top", headers={"If-None-Match": ANSWER.etag})
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"] == ANSWER.etag
    assert app.reached == []


async def test_other_requests_go_to_the_app() -> None:
    app = App()
    async with _client(app, FakeTop()) as http:
        for method, path in [("GET", "/products/7"), ("POST", "/products/top"), ("GET", "/")]:
            assert (await http.request(method, path)).status_code == 299
    assert app.reached == ["GET /products/7", "POST /products/top", "GET /"]


async def test_an_answer_that_cannot_be_had_is_left_to_the_app() -> None:
    app = App()
    async with _client(app, FakeTop(failing=True)) as http:
        answer = await http.get("/products/top")
    assert answer.status_code == 299
    assert app.reached == ["GET /products/top"]
