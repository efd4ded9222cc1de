"""The hottest GETs answered in front of the app (`queries.hot_reads.HotReads`): the
plain case of top products, a product and a readable balance answered with the routes'
own answers (200, 304 for a tag, 404 for unknown), and everything else, refusals and
failures included, left to the app."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import cast

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from shopflow.domain.clock import utc_now
from shopflow.domain.top_products import TOP_LIMIT
from shopflow.queries.answers import ProductAnswer, TopProductAnswer
from shopflow.queries.auth import SCOPE_READ
from shopflow.queries.hot_reads import HotReads
from shopflow.queries.http_caching import PRIVATE, PRODUCT_CACHE_CONTROL, TOP_CACHE_CONTROL
from shopflow.queries.read_model import ReadModel
from shopflow.queries.read_pages import ReadPages
from shopflow.queries.top_products import TopAnswer, TopProducts
from tests.support.signing_keys import SigningKey, accepting, bearer, ec_key

ANSWER = TopAnswer.of([TopProductAnswer(product_id=7, name="Mug", units_sold=3)], "redis")
MUG = ProductAnswer(product_id=7, name="Mug", price=1200, stock=4)


class FakeTop:
    def __init__(self, failing: bool = False) -> None:
        self.failing = failing

    async def answer(self) -> TopAnswer:
        if self.failing:
            raise ConnectionRefusedError("the database is away")
        return ANSWER


class FakeReadModel(ReadModel):
    """Product 7 (the mug), user 7 with 700 points; or every read failing."""

    def __init__(self, failing: bool = False) -> None:  # no engine: nothing connects
        self.failing = failing

    async def product(self, product_id: int) -> ProductAnswer | None:
        if self.failing:
            raise ConnectionRefusedError("the database is away")
        return MUG if product_id == 7 else None

    async def balance(self, user_id: int) -> int | None:
        if self.failing:
            raise ConnectionRefusedError("the database is away")
        return 700 if user_id == 7 else None

    async def top_products(self, now: datetime, limit: int = TOP_LIMIT) -> list[TopProductAnswer]:
        raise AssertionError("top products are held (FakeTop)")


class App:
    """The app behind: answers 299 to whatever reaches it, and counts it."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return ec_key()


@pytest.fixture
def app() -> App:
    return App()


def _client(app: App, key: SigningKey, *, failing: bool = False) -> httpx.AsyncClient:
    pages = ReadPages(FakeReadModel(failing), cast(TopProducts, FakeTop(failing)), utc_now)
    front = HotReads(app, pages, accepting(key).verifier)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=front), base_url="http://s")


@pytest.fixture
async def http(app: App, key: SigningKey) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, key) as client:
        yield client


async def test_a_get_of_top_is_the_held_answer_with_its_headers(
    http: httpx.AsyncClient, app: App
) -> None:
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


async def test_a_client_holding_the_tag_gets_304_without_a_body(
    http: httpx.AsyncClient, app: App
) -> None:
    answer = await http.get("/products/top", headers={"If-None-Match": ANSWER.etag})
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"] == ANSWER.etag
    assert app.reached == []


async def test_a_product_is_answered_and_revalidated_in_front(
    http: httpx.AsyncClient, app: App
) -> None:
    answer = await http.get("/products/7")
    assert answer.status_code == 200
    assert answer.json() == {"product_id": 7, "name": "Mug", "price": 1200, "stock": 4}
    assert answer.headers["cache-control"] == PRODUCT_CACHE_CONTROL
    again = await http.get("/products/7", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert app.reached == []


async def test_an_unknown_product_is_404_in_the_contract_shape(
    http: httpx.AsyncClient, app: App
) -> None:
    answer = await http.get("/products/8")
    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown_product", "detail": "product 8 does not exist"}
    assert app.reached == []


async def test_a_readable_balance_is_answered_in_front(
    http: httpx.AsyncClient, app: App, key: SigningKey
) -> None:
    own = await http.get("/users/7/points", headers=bearer(key.token(sub="7")))
    assert own.status_code == 200
    assert own.json() == {"user_id": 7, "balance": 700}
    assert own.headers["cache-control"] == PRIVATE
    reader = bearer(key.token(sub="support-desk", scope=SCOPE_READ))
    unknown = await http.get("/users/8/points", headers=reader)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown_user", "detail": "user 8 is not registered"}
    assert app.reached == []


async def test_refusals_and_odd_paths_are_left_to_the_app(
    http: httpx.AsyncClient, app: App, key: SigningKey
) -> None:
    customer = bearer(key.token(sub="7"))
    asks = [
        ("GET", "/users/7/points", {}),  # no token: 401 there
        ("GET", "/users/7/points", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("GET", "/users/7/points", bearer(ec_key().token(sub="7"))),  # a key not ours
        ("GET", "/users/8/points", customer),  # another user's: 403 there
        ("GET", "/users/07/points", customer),  # not plain decimal: the route decides
        ("GET", "/products/0", {}),  # out of range: 422 there
        ("GET", "/products/9223372036854775808", {}),
        ("GET", "/products/7/", {}),
        ("GET", "/products/-7", {}),
        ("POST", "/products/top", {}),
        ("HEAD", "/products/7", {}),
        ("GET", "/users/7/cart", customer),
        ("GET", "/", {}),
    ]
    for method, path, headers in asks:
        assert (await http.request(method, path, headers=headers)).status_code == 299, path
    assert app.reached == [f"{method} {path}" for method, path, _ in asks]


async def test_reads_that_fail_are_left_to_the_app(app: App, key: SigningKey) -> None:
    async with _client(app, key, failing=True) as http:
        for path in ["/products/top", "/products/7", "/users/7/points"]:
            answer = await http.get(path, headers=bearer(key.token(sub="7")))
            assert answer.status_code == 299
    assert app.reached == ["GET /products/top", "GET /products/7", "GET /users/7/points"]
