"""Commands over HTTP against the real servers (CONTRACT.md, Writing over HTTP): each
write becomes the command on its topic and is answered with its result from the ledger;
the same key and body answer the same (one `event_id`), another body is 422, no key is
400; a customer acts only for their own user and cannot charge; one ledger whichever way
a command came in."""

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.http_writes import http_command_id
from shopflow.contracts.limits import MAX_MESSAGE_BYTES
from shopflow.producers.client import ShopflowClient
from shopflow.queries.auth import SCOPE_POINTS_CHARGE, SCOPE_READ, SCOPE_WRITE
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.tokens import TokenSigner
from shopflow.tokens import SCOPE_ONLY_SUBJECT
from tests.support.database import (
    a_query_waits_on_a_lock,
    balance_of,
    failing_point_inserts,
    ledger_rows,
    stock_of,
)
from tests.support.http_side import http_side
from tests.support.ids import new_command_id
from tests.support.ports import free_port
from tests.support.scratch import service_env
from tests.support.service import funded_user, new_product, registered_user
from tests.support.waiting import until

PAYMENTS = [SCOPE_POINTS_CHARGE, SCOPE_READ]
WAIT_LONG = {"Prefer": "wait=30"}
INFRA = Path(__file__).resolve().parents[2] / "scripts" / "infra.sh"


@pytest.fixture
def serve_settings(shopflow_service: Runtime, shopflow_token: TokenSigner) -> Settings:
    """The settings of another serve process beside the session's, checking its tokens."""
    return shopflow_token.settings_for(shopflow_service.settings)


def _headers(
    token: TokenSigner, key: str | None, *, user: int | None = None, scopes: list[str] | None = None
) -> dict[str, str]:
    headers = token.headers(user=user, scopes=scopes or [])
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def test_a_charge_over_http_answers_its_event_and_the_same_key_replays_it(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    key = new_command_id("charge-key")
    path = f"/users/{user_id}/points/charges"
    headers = _headers(shopflow_token, key, scopes=PAYMENTS)

    first = await shopflow_http.post(path, json={"amount": 250}, headers=headers)
    again = await shopflow_http.post(path, json={"amount": 250}, headers=headers)
    other = await shopflow_http.post(path, json={"amount": 999}, headers=headers)
    keyless = await shopflow_http.post(
        path, json={"amount": 1}, headers=_headers(shopflow_token, None, scopes=PAYMENTS)
    )

    assert first.status_code == 200
    assert (first.json()["type"], first.json()["balance"]) == ("PointsCharged", 250)
    assert again.status_code == 200
    assert again.json()["event_id"] == first.json()["event_id"]
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_conflict")
    assert (keyless.status_code, keyless.json()["error"]) == (400, "idempotency_key_missing")
    assert await balance_of(engine, user_id) == 250


async def test_a_body_over_the_kafka_envelopes_bound_is_413_and_nothing_is_sent(
    shopflow_http: httpx.AsyncClient, shopflow_token: TokenSigner, client: ShopflowClient
) -> None:
    user_id = await registered_user(client)
    key = new_command_id("huge")
    headers = _headers(shopflow_token, key, scopes=PAYMENTS) | {"Content-Type": "application/json"}
    padded = b'{"amount": 5' + b" " * MAX_MESSAGE_BYTES + b"}"  # valid JSON, over the bound

    answer = await shopflow_http.post(
        f"/users/{user_id}/points/charges", content=padded, headers=headers
    )
    look = await shopflow_http.get(
        f"/commands/{http_command_id(SCOPE_ONLY_SUBJECT, key)}?wait_ms=1000"
    )

    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")
    assert (look.status_code, look.json()["error"]) == (404, "unknown_command")


async def test_a_customer_orders_and_cancels_over_http_and_may_not_charge(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await funded_user(client, 1_000)
    product_id = await new_product(client, price=100, stock=5)

    def mine(key: str) -> dict[str, str]:
        return _headers(shopflow_token, key, user=user_id)

    added = await shopflow_http.post(
        f"/users/{user_id}/cart/items",
        json={"product_id": product_id, "quantity": 3},
        headers=mine("add-1"),
    )
    removed = await shopflow_http.delete(
        f"/users/{user_id}/cart/items/{product_id}?quantity=1", headers=mine("remove-1")
    )
    too_many = await shopflow_http.delete(
        f"/users/{user_id}/cart/items/{product_id}?quantity=9", headers=mine("remove-2")
    )
    placed = await shopflow_http.post(
        f"/users/{user_id}/orders", json={"from_cart": True}, headers=mine("order-1")
    )
    order_id = placed.json()["order_id"]
    cancelled = await shopflow_http.post(
        f"/users/{user_id}/orders/{order_id}/cancel", headers=mine("cancel-1")
    )
    twice = await shopflow_http.post(
        f"/users/{user_id}/orders/{order_id}/cancel", headers=mine("cancel-2")
    )
    unknown = await shopflow_http.post(
        f"/users/{user_id}/orders/{order_id + 10**12}/cancel", headers=mine("cancel-3")
    )
    charge = await shopflow_http.post(
        f"/users/{user_id}/points/charges", json={"amount": 5}, headers=mine("charge-1")
    )
    others = await shopflow_http.post(
        f"/users/{user_id + 1}/cart/items",
        json={"product_id": product_id, "quantity": 1},
        headers=mine("add-2"),
    )

    assert (added.status_code, added.json()["cart_quantity"]) == (200, 3)
    assert (removed.status_code, removed.json()["cart_quantity"]) == (200, 2)
    assert too_many.status_code == 409
    assert too_many.json()["error"] == "insufficient_cart_quantity"
    assert too_many.json()["result"]["type"] == "CartItemRejected"
    assert (placed.status_code, placed.json()["total"]) == (201, 200)
    assert (cancelled.status_code, cancelled.json()["refunded"]) == (200, 200)
    assert (twice.status_code, twice.json()["error"]) == (409, "order_cancelled")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_order")
    assert (charge.status_code, charge.json()["error"]) == (403, "forbidden")
    assert (others.status_code, others.json()["error"]) == (403, "forbidden")
    assert await balance_of(engine, user_id) == 1_000
    assert await stock_of(engine, product_id) == 5


async def test_one_ledger_a_command_sent_over_kafka_then_over_http_has_one_outcome(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    key = new_command_id("both-ways")
    subject = "payments-service"
    over_kafka = await client.send_and_wait(
        ChargePoints(command_id=http_command_id(subject, key), user_id=user_id, amount=40)
    )
    # The service's token names itself: its `sub` is whose keys these are.
    headers = shopflow_token.headers(scopes=[SCOPE_POINTS_CHARGE], subject=subject)
    headers["Idempotency-Key"] = key

    over_http = await shopflow_http.post(
        f"/users/{user_id}/points/charges", json={"amount": 40}, headers=headers
    )

    assert over_http.status_code == 200
    assert over_http.json()["event_id"] == str(over_kafka.event_id)
    assert await balance_of(engine, user_id) == 40


async def test_two_requests_racing_with_one_key_get_one_outcome_applied_once(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    headers = _headers(
        shopflow_token, new_command_id("race"), scopes=[SCOPE_WRITE, SCOPE_POINTS_CHARGE]
    )
    path = f"/users/{user_id}/points/charges"

    answers = await asyncio.gather(
        *(shopflow_http.post(path, json={"amount": 7}, headers=headers) for _ in range(2))
    )

    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["event_id"] == answers[1].json()["event_id"]
    assert await balance_of(engine, user_id) == 7


async def test_without_a_result_in_the_wait_it_is_202_with_where_to_look(
    shopflow_http: httpx.AsyncClient, shopflow_token: TokenSigner, client: ShopflowClient
) -> None:
    user_id = await registered_user(client)
    headers = _headers(shopflow_token, new_command_id("later"), scopes=PAYMENTS) | {
        "Prefer": "wait=0"
    }

    accepted = await shopflow_http.post(
        f"/users/{user_id}/points/charges", json={"amount": 3}, headers=headers
    )
    location = accepted.headers["Location"]
    result = await shopflow_http.get(f"{location}?wait_ms=15000")

    assert accepted.status_code == 202
    assert location == f"/commands/{accepted.json()['command_id']}"
    assert (result.status_code, result.json()["result"]["balance"]) == (200, 3)


async def test_the_rate_limit_is_one_across_two_serve_processes(
    serve_settings: Settings, shopflow_token: TokenSigner, client: ShopflowClient
) -> None:
    user_id = await registered_user(client)
    settings = serve_settings.model_copy(update={"http_write_rate_limit": "3/minute"})
    caller = f"limited-{new_command_id()}"  # a caller of its own: its windows are fresh
    token = shopflow_token.headers(scopes=[SCOPE_POINTS_CHARGE], subject=caller)
    async with http_side(settings) as first, http_side(settings) as second:
        https = [first, second]
        answers = []
        for i in range(4):  # two processes in turn, one caller
            answers.append(
                await https[i % 2].post(
                    f"/users/{user_id}/points/charges",
                    json={"amount": 1},
                    headers=token | {"Idempotency-Key": f"limit-{i}"},
                )
            )

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["error"] == "rate_limited"
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60


async def test_a_serve_process_killed_while_a_request_waits_loses_nothing(
    serve_settings: Settings,
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    settings = serve_settings
    port = free_port()
    serve = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "shopflow", "serve", "--no-consume", "--log-level", "warning"),
        env=service_env(
            settings,
            SHOPFLOW_HTTP_PORT=str(port),
            SHOPFLOW_AUTH_PUBLIC_KEY_FILE=str(settings.auth_public_key_file),
        ),
    )
    key = new_command_id("killed")
    headers = _headers(shopflow_token, key, scopes=PAYMENTS) | {"Prefer": "wait=30"}
    path = f"/users/{user_id}/points/charges"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as remote:
            await until(lambda: _live(remote), 60, "the serve process answers")
            # The user's balance row held: the charge's batch waits, and so does the request.
            async with engine.begin() as connection:
                await connection.execute(
                    text("SELECT 1 FROM point_balances WHERE user_id = :u FOR UPDATE"),
                    {"u": user_id},
                )
                waiting = asyncio.create_task(
                    remote.post(path, json={"amount": 9}, headers=headers)
                )
                await a_query_waits_on_a_lock(engine, 30)
                serve.kill()
                await serve.wait()
                with pytest.raises(httpx.TransportError):
                    await waiting
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()

    # The client's retry, same key, to another serve process: the one result.
    retried = await shopflow_http.post(path, json={"amount": 9}, headers=headers)

    assert retried.status_code == 200
    assert retried.json()["balance"] == 9
    assert await balance_of(engine, user_id) == 9


async def test_a_command_answered_temporarily_unavailable_is_503_at_once_and_its_retry_applies(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
    owner_engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    headers = _headers(shopflow_token, new_command_id("unavailable"), scopes=PAYMENTS)
    path = f"/users/{user_id}/points/charges"

    async with failing_point_inserts(owner_engine, user_id, failures=4):  # every attempt
        started = time.monotonic()
        first = await shopflow_http.post(path, json={"amount": 40}, headers=headers | WAIT_LONG)
        waited_s = time.monotonic() - started
    retried = await shopflow_http.post(path, json={"amount": 40}, headers=headers)

    assert (first.status_code, first.json()["error"]) == (503, "temporarily_unavailable")
    assert first.headers["Retry-After"] == "1"
    assert waited_s < 20  # told by the applier, not waited out (`Prefer: wait=30`)
    assert retried.status_code == 200
    assert retried.json()["balance"] == 40
    assert await balance_of(engine, user_id) == 40


async def test_a_serve_process_without_its_database_answers_503_and_the_retry_gets_the_result(
    serve_settings: Settings,
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    user_id = await registered_user(client)
    # Its queries and its look at the ledger go to a port where no database is.
    away = make_url(serve_settings.query_database_url).set(port=free_port())
    cut_off_settings = serve_settings.model_copy(
        update={"query_database_url": away.render_as_string(False)}
    )
    headers = _headers(shopflow_token, new_command_id("no-database"), scopes=PAYMENTS)
    path = f"/users/{user_id}/points/charges"
    async with http_side(cut_off_settings) as cut_off:
        read = await cut_off.get(f"/users/{user_id}/points", headers=headers)
        charge = await cut_off.post(
            path, json={"amount": 6}, headers=headers | {"Prefer": "wait=2"}
        )
    # Sent all the same (the look before sending is only a shortcut): the retry, to a
    # serve process that reaches the database, gets its one result.
    retried = await shopflow_http.post(path, json={"amount": 6}, headers=headers | WAIT_LONG)

    for answer in (read, charge):
        assert (answer.status_code, answer.json()["error"]) == (503, "temporarily_unavailable")
        assert answer.headers["Retry-After"] == "1"
    assert (retried.status_code, retried.json()["balance"]) == (200, 6)
    assert await balance_of(engine, user_id) == 6


async def test_kafka_stopped_is_503_and_the_retry_once_it_is_back_is_applied_once(
    shopflow_http: httpx.AsyncClient,
    shopflow_token: TokenSigner,
    client: ShopflowClient,
    engine: AsyncEngine,
) -> None:
    """The session's own broker, stopped and started again (`scripts/infra.sh`: the tests
    run on its servers)."""
    user_id = await registered_user(client)
    key = new_command_id("kafka-away")
    headers = _headers(shopflow_token, key, scopes=PAYMENTS)
    path = f"/users/{user_id}/points/charges"
    answers: list[httpx.Response] = []

    async def applied() -> bool:
        answers.append(await shopflow_http.post(path, json={"amount": 11}, headers=headers))
        return answers[-1].status_code == 200

    await _infra("down", "kafka")
    try:
        away = await shopflow_http.post(path, json={"amount": 11}, headers=headers)
    finally:
        await _infra("up", "kafka")
    await until(applied, 90, "the charge is applied once Kafka is back")
    again = await shopflow_http.post(path, json={"amount": 11}, headers=headers)

    assert (away.status_code, away.json()["error"]) == (503, "temporarily_unavailable")
    assert away.headers["Retry-After"] == "1"
    # Meanwhile: 503 while the producer finds the broker, 202 while the workers rejoin.
    assert {a.status_code for a in answers} <= {200, 202, 503}
    assert again.json()["event_id"] == answers[-1].json()["event_id"]
    assert await balance_of(engine, user_id) == 11
    assert await ledger_rows(engine, again.json()["command_id"]) == 1


async def _infra(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "bash", str(INFRA), *args, env=os.environ, stdout=asyncio.subprocess.DEVNULL
    )
    assert await process.wait() == 0, f"scripts/infra.sh {' '.join(args)} failed"


async def _live(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health/live")).status_code == 200
    except httpx.TransportError:
        return False
