"""The whole HTTP API from its own OpenAPI document (schemathesis), against the real
servers: every operation, as an anonymous caller, as a service with every scope and as a
registered customer; requests valid by the document and invalid ones. Every answer must
be documented (status, content type, body schema, headers), never a 500, and invalid
data is refused with a 4xx.

The app is `shopflow serve --no-consume`'s, in process (ASGI), beside the session's
consuming service, so the writes are applied. Generated ids rarely name anything, so
each case may have its ids narrowed to a user, product, orders and a command seeded
here, and a customer mostly names themself: the branches past "unknown" (2xx, 409) are
reached too, and the last test checks they were and that the writes were applied.

Bounded (EXAMPLES per operation and caller; about 90 s in all) and
reproducible (derandomized, no example database). `SHOPFLOW_SCHEMA_EXAMPLES=500` runs
more (docs/testing.md)."""

import os
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as schemathesis_checks
from schemathesis.specs.openapi import checks as openapi_checks
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.app import create_app
from shopflow.contracts.commands import (
    AddCartItem,
    ChargePoints,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    UpsertProduct,
)
from shopflow.contracts.events import (
    CartItemAdded,
    OrderPlaced,
    PointsCharged,
    ProductUpserted,
    UserRegistered,
)
from shopflow.contracts.http_writes import HTTP_COMMAND_ID_PREFIX, IDEMPOTENCY_KEY_HEADER
from shopflow.persistence.tables import orders, point_transactions
from shopflow.producers.client import ShopflowClient
from shopflow.queries.auth import SCOPES
from shopflow.runtime import Runtime
from shopflow.testing.tokens import TokenSigner
from tests.support.ids import new_command_id, new_entity_id

EXAMPLES = int(os.environ.get("SHOPFLOW_SCHEMA_EXAMPLES", "40"))

# Every operation of the OpenAPI document (`test_the_document_has_these_operations`
# fails when a route is added or removed, so that this list follows).
READS = (
    "GET /users/{user_id}/points",
    "GET /users/{user_id}/cart",
    "GET /users/{user_id}/orders",
    "GET /users/{user_id}/orders/{order_id}",
    "GET /users/{user_id}/points/transactions",
    "GET /commands/{command_id}",
)
PUBLIC = (
    "GET /products/top",
    "GET /products/{product_id}",
    "GET /health/live",
    "GET /health/ready",
)
WRITES = (
    "POST /users/{user_id}/points/charges",
    "POST /users/{user_id}/cart/items",
    "DELETE /users/{user_id}/cart/items/{product_id}",
    "POST /users/{user_id}/orders",
    "POST /users/{user_id}/orders/{order_id}/cancel",
)
OPERATIONS = (*READS, *PUBLIC, "GET /metrics", *WRITES)
GUARDED = frozenset((*READS, "GET /metrics", *WRITES))

ANONYMOUS, SERVICE, CUSTOMER = "anonymous", "service", "customer"
CALLERS = (ANONYMOUS, SERVICE, CUSTOMER)
SERVICE_SUBJECT = "schemathesis-service"

# What is checked of every answer. Not the checks that send requests of their own
# (`ignored_auth`, `use_after_free`, ...): they go through schemathesis's transports,
# not this client in the session's event loop, and the auth rules are covered by the
# anonymous run and tests/unit/test_http_auth.py. Not `positive_data_acceptance`: a
# valid request is rightly refused by the business (409, 422 `idempotency_conflict`).
CHECKS = [
    # Any 5xx, the documented 503s included: every server is up here, so a 503 (Kafka
    # unreachable, a readiness check down) would be a fault of the run, worth seeing.
    schemathesis_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]


@dataclass(frozen=True)
class Seeded:
    user_id: int  # registered, funded
    product_id: int  # price 1, a large stock
    order_ids: tuple[int, ...]  # placed, for the cancels and the order reads
    command_id: str  # a result in the ledger, of the user


@dataclass
class Api:
    http: httpx.AsyncClient
    schema: Any  # schemathesis's BaseSchema
    seeded: Seeded
    tokens: dict[str, str]
    # (operation, caller) -> the statuses answered, for the last test.
    answered: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    strategies: dict[tuple[str, GenerationMode, str], st.SearchStrategy[Any]] = field(
        default_factory=dict
    )


async def _seed(client: ShopflowClient) -> Seeded:
    user_id, product_id = new_entity_id(), new_entity_id()
    command_id = new_command_id("schema-fund")
    commands: list[Any] = [
        RegisterUser(command_id=new_command_id("schema-user"), user_id=user_id, name="Schema"),
        UpsertProduct(
            command_id=new_command_id("schema-product"),
            product_id=product_id,
            name="Schema product",
            price=1,
            stock_added=1_000_000,
        ),
        ChargePoints(command_id=command_id, user_id=user_id, amount=1_000_000_000),
    ]
    for command in commands:
        event = await client.send_and_wait(command)
        assert isinstance(event, UserRegistered | ProductUpserted | PointsCharged), event
    order_ids = []
    for _ in range(6):
        placed = await client.send_and_wait(
            PlaceOrder(
                command_id=new_command_id("schema-order"),
                user_id=user_id,
                items=[OrderLine(product_id=product_id, quantity=1)],
            )
        )
        assert isinstance(placed, OrderPlaced), placed
        order_ids.append(placed.order_id)
    added = await client.send_and_wait(
        AddCartItem(
            command_id=new_command_id("schema-cart"),
            user_id=user_id,
            product_id=product_id,
            quantity=1_000,
        )
    )
    assert isinstance(added, CartItemAdded), added
    return Seeded(user_id, product_id, tuple(order_ids), command_id)


@pytest.fixture(scope="module")
async def api(
    service: Runtime, client: ShopflowClient, shopflow_token: TokenSigner
) -> AsyncIterator[Api]:
    seeded = await _seed(client)
    # The app as `shopflow serve --no-consume` runs it. Its write rate limit raised: the
    # run sends a few hundred writes a minute as one service, and 429s would keep them
    # from being applied (429 is still documented and its shape checked).
    settings = shopflow_token.settings_for(service.settings).model_copy(
        update={"http_write_rate_limit": "100000/second"}
    )
    app = create_app(settings, consume=False, prepare_first=False)
    tokens = {
        SERVICE: shopflow_token(scopes=sorted(SCOPES), subject=SERVICE_SUBJECT),
        CUSTOMER: shopflow_token(user=seeded.user_id),
    }
    schema = schemathesis.openapi.from_dict(app.openapi())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shopflow") as http,
    ):
        yield Api(http, schema, seeded, tokens)


def test_the_document_has_these_operations(api: Api) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, methods in api.schema.raw_schema["paths"].items()
        for method in methods
    }
    assert documented == set(OPERATIONS)


def _fixed_ids(api: Api, operation: Any, caller: str, data: st.DataObject) -> dict[str, Any]:
    """The path ids to fix to seeded ones for this case (drawn, so some cases keep
    generated ids): a customer names themself most of the time, else they are 403s."""
    names = {p.name for p in operation.path_parameters}
    seeded = api.seeded
    fixed: dict[str, Any] = {}
    if caller == ANONYMOUS:
        return fixed
    if "user_id" in names and data.draw(
        st.sampled_from([True, True, True, False] if caller == CUSTOMER else [True, False]),
        label="seeded user",
    ):
        fixed["user_id"] = seeded.user_id
    if "product_id" in names and data.draw(st.booleans(), label="seeded product"):
        fixed["product_id"] = seeded.product_id
    if "order_id" in names and data.draw(st.booleans(), label="seeded order"):
        fixed["order_id"] = data.draw(st.sampled_from(seeded.order_ids), label="order")
    if "command_id" in names and data.draw(st.booleans(), label="seeded command"):
        fixed["command_id"] = seeded.command_id
    return fixed


def _with_seeded_products(api: Api, body: Any, data: st.DataObject) -> None:
    """A valid body's product ids, perhaps replaced by the seeded product (in place)."""
    if not isinstance(body, dict) or not data.draw(st.booleans(), label="seeded in body"):
        return
    if "product_id" in body:
        body["product_id"] = api.seeded.product_id
    items = body.get("items")
    if isinstance(items, list) and items and isinstance(items[0], dict):
        # One line of the seeded product (the lines' ids must stay distinct).
        items[0]["product_id"] = api.seeded.product_id
        del items[1:]


def _strategy(
    api: Api, label: str, mode: GenerationMode, fixed: dict[str, Any]
) -> st.SearchStrategy[Any]:
    key = (label, mode, repr(sorted(fixed.items())))
    if key not in api.strategies:
        method, path = label.split(" ", 1)
        operation = api.schema[path][method]
        api.strategies[key] = operation.as_strategy(
            generation_mode=mode, path_parameters=fixed or None
        )
    return api.strategies[key]


def _negatable(operation: Any) -> bool:
    """Whether there is anything of the request to make invalid."""
    return bool(list(operation.iter_parameters())) or bool(operation.body)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("label", OPERATIONS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixtures are module-scoped, and the examples are requests to real servers.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
async def test_every_answer_is_documented(
    api: Api, label: str, caller: str, data: st.DataObject
) -> None:
    method, path = label.split(" ", 1)
    operation = api.schema[path][method]
    negative = _negatable(operation) and data.draw(st.booleans(), label="invalid")
    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE
    fixed = {} if negative else _fixed_ids(api, operation, caller, data)
    case = data.draw(_strategy(api, label, mode, fixed), label="case")

    wait_ms = case.query.get("wait_ms") if isinstance(case.query, dict) else None
    if isinstance(wait_ms, int) and 0 <= wait_ms <= 30_000:
        # Bounded: an unknown command's answer waits all of `wait_ms`. Only a valid one
        # is shortened, so that an invalid one stays invalid (and is answered at once).
        case.query["wait_ms"] = min(wait_ms, 100)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if caller != ANONYMOUS:
        headers["Authorization"] = f"Bearer {api.tokens[caller]}"
    if label in WRITES:
        if not negative:
            _with_seeded_products(api, case.body, data)
            if fixed.get("product_id") == api.seeded.product_id:
                case.query["quantity"] = 1  # what the seeded cart holds, likely
            # Mostly a key of the run's own (a generated one is often absent: 400).
            if data.draw(st.sampled_from([True, True, False]), label="key"):
                headers[IDEMPOTENCY_KEY_HEADER] = new_command_id("schema")
        # Bounded: the consumers answer in milliseconds; now and then no wait at all,
        # for the 202 answer.
        headers["Prefer"] = data.draw(st.sampled_from(["wait=3"] * 4 + ["wait=0"]))
    case.headers = headers

    sent = case.as_transport_kwargs(base_url="http://shopflow")
    assert not sent.get("cookies")  # the document has none
    body: dict[str, Any] = {}
    if "json" in sent:
        body["json"] = sent["json"]
    elif "data" in sent:
        body["content"] = sent["data"]
    response = await api.http.request(
        sent["method"],
        sent["url"],
        params=sent.get("params"),
        headers=sent["headers"],
        **body,
    )
    api.answered[label, caller].append(response.status_code)

    case.validate_response(response, checks=CHECKS)
    if caller == ANONYMOUS and label in GUARDED:
        # The token first, whatever the body (even one that is not JSON at all).
        assert response.status_code == 401, response.text


async def test_the_run_reached_past_unknown_and_applied_writes(
    api: Api, engine: AsyncEngine
) -> None:
    """After the run above (this file's tests run in order): with a token, every user
    read answered 200 at least once and every write 2xx, and the writes are in the
    database, applied by the consumers."""
    answered = api.answered
    assert answered, "run the whole file: this test reads what the run above answered"
    for caller in (SERVICE, CUSTOMER):
        for label in READS:
            assert 200 in answered[label, caller], (label, caller, answered[label, caller])
    for label in WRITES:
        statuses = answered[label, SERVICE] + answered[label, CUSTOMER]
        assert any(200 <= s < 300 for s in statuses), (label, sorted(set(statuses)))

    user_id = api.seeded.user_id
    async with engine.connect() as connection:
        charges = await connection.scalar(
            select(point_transactions.c.command_id)
            .where(point_transactions.c.user_id == user_id)
            .where(point_transactions.c.command_id.startswith(HTTP_COMMAND_ID_PREFIX))
            .limit(1)
        )
        placed = (
            await connection.execute(select(orders.c.order_id).where(orders.c.user_id == user_id))
        ).all()
        cancelled = (
            await connection.execute(
                select(orders.c.order_id)
                .where(orders.c.user_id == user_id)
                .where(orders.c.status == "cancelled")
            )
        ).all()
    assert charges is not None, "no charge over HTTP was applied"
    assert len(placed) > len(api.seeded.order_ids), "no order over HTTP was applied"
    assert cancelled, "no cancel over HTTP was applied"
