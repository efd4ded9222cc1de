"""GET /commands/{command_id}: a command's result as the ledger stored it, now or as
soon as it is spent (woken by the ledger's announcement, not by polling), shown only to
whoever may see its entity; the listener's connection lost and found again loses no
waiting request."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.consumers.failures import is_transient
from shopflow.contracts.commands import ChargePoints, UpsertProduct
from shopflow.persistence.tables import processed_commands
from shopflow.producers.client import ShopflowClient
from shopflow.queries.auth import SCOPE_READ
from shopflow.queries.command_results import CommandResults, StoredResult
from shopflow.queries.http import create_http_app
from shopflow.queries.read_model import ReadModel
from shopflow.runtime import Runtime
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import registered_user
from tests.support.signing_keys import SigningKey, accepting, bearer, ec_key


async def _ok() -> None:
    return None


class CountingResults(CommandResults):
    """Counts its looks at the ledger: a woken wait looks a few times, not once a tick."""

    looks = 0

    async def stored(self, command_id: str) -> StoredResult | None:
        self.looks += 1
        return await super().stored(command_id)


@pytest.fixture(scope="module")
def signer() -> SigningKey:
    return ec_key()


@pytest.fixture
async def results(service: Runtime) -> AsyncIterator[CountingResults]:
    results = CountingResults(service.settings.database_url, pool_size=4, transient=is_transient)
    await results.start()
    assert await results.wait_listening(10)
    yield results
    await results.stop()


@pytest.fixture
async def http(
    service: Runtime, signer: SigningKey, results: CountingResults
) -> AsyncIterator[httpx.AsyncClient]:
    read_model = ReadModel(service.engine)
    app = create_http_app(
        read_model,
        {"postgresql": _ok},
        authenticator=accepting(signer),
        command_results=results,
    )
    headers = bearer(signer.token(sub=None, scope=SCOPE_READ))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shopflow", headers=headers
    ) as client:
        yield client
    await read_model.close()


async def _stored_json(engine: AsyncEngine, command_id: str) -> str:
    async with engine.connect() as connection:
        statement = select(processed_commands.c.result_json).where(
            processed_commands.c.command_id == command_id
        )
        return str((await connection.execute(statement)).scalar_one())


async def test_a_waiting_request_is_answered_with_the_stored_result_once_it_is_spent(
    http: httpx.AsyncClient, client: ShopflowClient, engine: AsyncEngine, results: CountingResults
) -> None:
    user_id = await registered_user(client)
    charge = ChargePoints(command_id=new_command_id("wait"), user_id=user_id, amount=70)
    waiting = asyncio.create_task(http.get(f"/commands/{charge.command_id}?wait_ms=20000"))
    await asyncio.sleep(0.5)  # the request is waiting before the command is sent
    looks_before = results.looks
    started = time.monotonic()

    await client.send(charge)
    answer = await waiting

    assert answer.status_code == 200
    stored = await _stored_json(engine, charge.command_id)
    # Byte for byte the stored result: the event as it was published.
    assert answer.text == f'{{"command_id":"{charge.command_id}","result":{stored}}}'
    event = await client.wait_for_result(charge.command_id)
    assert answer.json()["result"]["event_id"] == str(event.event_id)
    # Woken, not polling: a look when woken (and perhaps one for a batch's other ids).
    assert results.looks - looks_before <= 3
    assert time.monotonic() - started < 10


async def test_no_result_is_404_at_once_or_at_the_end_of_the_wait(http: httpx.AsyncClient) -> None:
    unknown = new_command_id("never")

    now = await http.get(f"/commands/{unknown}")
    started = time.monotonic()
    later = await http.get(f"/commands/{unknown}", params={"wait_ms": 300})

    assert (now.status_code, now.json()["error"]) == (404, "unknown_command")
    assert (later.status_code, later.json()["error"]) == (404, "unknown_command")
    assert time.monotonic() - started >= 0.3


async def test_a_users_command_is_seen_by_that_user_and_readers_and_404_to_others(
    http: httpx.AsyncClient, client: ShopflowClient, signer: SigningKey
) -> None:
    user_id = await registered_user(client)
    charge = ChargePoints(command_id=new_command_id("mine"), user_id=user_id, amount=5)
    await client.send_and_wait(charge)
    product = UpsertProduct(
        command_id=new_command_id("catalog"),
        product_id=new_entity_id(),
        name="Vase",
        price=9,
        stock_added=1,
    )
    await client.send_and_wait(product)
    path = f"/commands/{charge.command_id}"

    own = await http.get(path, headers=bearer(signer.token(sub=str(user_id))))
    other = await http.get(path, headers=bearer(signer.token(sub=str(user_id + 1))))
    reader = await http.get(path)
    anonymous = await http.get(path, headers={"Authorization": ""})
    catalog = await http.get(
        f"/commands/{product.command_id}", headers=bearer(signer.token(sub=str(user_id)))
    )

    assert own.status_code == 200
    assert own.json()["result"]["balance"] == 5
    # Not 403: another user's command ids are as unknown as ids never sent.
    assert (other.status_code, other.json()["error"]) == (404, "unknown_command")
    assert reader.status_code == 200
    assert anonymous.status_code == 401
    assert catalog.status_code == 200  # a product is public


@pytest.mark.parametrize(
    "path",
    ["/commands/" + "x" * 65, "/commands/bad%20id", "/commands/ok?wait_ms=30001"],
)
async def test_a_bad_command_id_or_wait_is_422(http: httpx.AsyncClient, path: str) -> None:
    answer = await http.get(path)

    assert answer.status_code == 422


async def test_a_waiting_request_outlives_the_listeners_lost_connection(
    http: httpx.AsyncClient, client: ShopflowClient, engine: AsyncEngine, results: CountingResults
) -> None:
    user_id = await registered_user(client)
    charge = ChargePoints(command_id=new_command_id("lost"), user_id=user_id, amount=3)
    waiting = asyncio.create_task(http.get(f"/commands/{charge.command_id}?wait_ms=20000"))
    await asyncio.sleep(0.3)

    # Every listening connection of this database (the service's role may end its own).
    async with engine.connect() as connection:
        ended = await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                " AND pid <> pg_backend_pid()"
            )
        )
        assert ended.all()
    await client.send(charge)
    answer = await waiting

    assert answer.status_code == 200
    assert answer.json()["result"]["amount"] == 3
    assert await results.wait_listening(10)  # and listening again
