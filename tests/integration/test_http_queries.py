"""The HTTP read side against the real database, asked with a service's token (the
scopes shopflow:read and shopflow:metrics) unless a test says otherwise; the tokens'
own rules are tests/unit/test_http_auth.py's."""

from collections.abc import AsyncIterator

import httpx
import pytest

from shopflow.contracts.commands import ChargePoints
from shopflow.producers.client import ShopflowClient
from shopflow.queries.auth import SCOPE_METRICS, SCOPE_READ
from shopflow.queries.http import create_http_app
from shopflow.queries.read_model import ReadModel
from shopflow.runtime import Runtime
from tests.support.ids import new_command_id, new_entity_id
from tests.support.seeding import seed_product
from tests.support.service import registered_user
from tests.support.signing_keys import SigningKey, accepting, bearer, ec_key


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("refused")


@pytest.fixture(scope="module")
def signer() -> SigningKey:
    return ec_key()


@pytest.fixture
async def http(service: Runtime, signer: SigningKey) -> AsyncIterator[httpx.AsyncClient]:
    read_model = ReadModel(service.engine)
    app = create_http_app(
        read_model,
        {"postgresql": _ok, "redis": _ok},
        authenticator=accepting(signer),
    )
    transport = httpx.ASGITransport(app=app)
    headers = bearer(signer.token(sub=None, scope=f"{SCOPE_READ} {SCOPE_METRICS}"))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://shopflow", headers=headers
    ) as client:
        yield client
    await read_model.close()


async def test_points_of_a_user_after_a_charge(
    http: httpx.AsyncClient, client: ShopflowClient
) -> None:
    user_id = await registered_user(client)
    await client.send_and_wait(
        ChargePoints(command_id=new_command_id(), user_id=user_id, amount=77)
    )

    answer = await http.get(f"/users/{user_id}/points")

    assert answer.status_code == 200
    assert answer.json() == {"user_id": user_id, "balance": 77}


async def test_a_customer_reads_its_own_points_and_not_another_users(
    http: httpx.AsyncClient, client: ShopflowClient, signer: SigningKey
) -> None:
    user_id = await registered_user(client)
    other = await registered_user(client)
    own_token = bearer(signer.token(sub=str(user_id)))

    own = await http.get(f"/users/{user_id}/points", headers=own_token)
    others = await http.get(f"/users/{other}/points", headers=own_token)
    nobody = await http.get(f"/users/{user_id}/points", headers={"Authorization": ""})

    assert (own.status_code, own.json()) == (200, {"user_id": user_id, "balance": 0})
    assert (others.status_code, others.json()["error"]) == (403, "forbidden")
    assert (nobody.status_code, nobody.json()["error"]) == (401, "unauthenticated")


async def test_points_of_an_unknown_user_is_404_unknown_user(http: httpx.AsyncClient) -> None:
    answer = await http.get(f"/users/{new_entity_id()}/points")

    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_user"


async def test_a_balance_is_private_and_revalidated_by_its_tag(
    http: httpx.AsyncClient, client: ShopflowClient
) -> None:
    user_id = await registered_user(client)
    first = await http.get(f"/users/{user_id}/points")
    etag = first.headers["etag"]
    held = await http.get(f"/users/{user_id}/points", headers={"If-None-Match": etag})
    await client.send_and_wait(ChargePoints(command_id=new_command_id(), user_id=user_id, amount=5))
    moved = await http.get(f"/users/{user_id}/points", headers={"If-None-Match": etag})

    assert first.headers["cache-control"] == "private, no-cache"
    assert held.status_code == 304
    assert held.content == b""
    assert moved.status_code == 200
    assert moved.json() == {"user_id": user_id, "balance": 5}
    assert moved.headers["etag"] != etag


async def test_a_product_may_be_cached_by_anyone_and_has_a_tag(
    http: httpx.AsyncClient, service: Runtime
) -> None:
    async with service.engine.begin() as connection:
        product_id = await seed_product(connection, name="Lamp", price=4200, stock=3)
    first = await http.get(f"/products/{product_id}")
    held = await http.get(
        f"/products/{product_id}", headers={"If-None-Match": first.headers["etag"]}
    )

    assert first.json() == {"product_id": product_id, "name": "Lamp", "price": 4200, "stock": 3}
    assert first.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=10"
    assert held.status_code == 304


async def test_unknown_product_is_404_unknown_product(http: httpx.AsyncClient) -> None:
    answer = await http.get(f"/products/{new_entity_id()}")

    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_product"


@pytest.mark.parametrize("user_id", ["abc", "0", "-1", str(2**63)])
async def test_bad_ids_are_422_with_a_machine_readable_error(
    http: httpx.AsyncClient, user_id: str
) -> None:
    answer = await http.get(f"/users/{user_id}/points")

    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"


async def test_readiness_names_the_server_that_is_down(
    service: Runtime, signer: SigningKey
) -> None:
    app = create_http_app(
        ReadModel(service.engine),
        {"postgresql": _ok, "kafka": _down},
        authenticator=accepting(signer),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shopflow") as client:
        answer = await client.get("/health/ready")

    assert answer.status_code == 503
    assert answer.json()["checks"]["postgresql"] == "up"
    assert answer.json()["checks"]["kafka"].startswith("down")


async def test_metrics_count_the_commands_answered(http: httpx.AsyncClient) -> None:
    answer = await http.get("/metrics")

    assert answer.status_code == 200
    assert "shopflow_commands_total" in answer.text
