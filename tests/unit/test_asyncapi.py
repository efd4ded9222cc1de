import json
from pathlib import Path

import httpx

from shopflow.app import create_app
from shopflow.asyncapi import asyncapi_json
from shopflow.contracts.topics import COMMAND_ROUTES
from tests.support.fakes import unit_settings
from tests.support.signing_keys import public_key_file

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_current() -> None:
    # Regenerate with: shopflow asyncapi --out docs/asyncapi.json
    assert json.loads(COMMITTED.read_text()) == json.loads(asyncapi_json())


def test_every_command_is_documented_and_refuses_unknown_fields() -> None:
    schemas = json.loads(asyncapi_json())["components"]["schemas"]

    for route in COMMAND_ROUTES:
        schema = schemas[route.type_name]
        assert schema["additionalProperties"] is False
        assert "command_id" in schema["required"]


async def test_serve_answers_the_same_document_and_a_page_rendering_it(tmp_path: Path) -> None:
    # The app `shopflow serve` runs, without its lifespan: nothing connects. Public
    # documents: no token is sent, yet a key is needed to build the app at all.
    settings = unit_settings(auth_public_key_file=public_key_file(tmp_path))
    app = create_app(settings, consume=False, prepare_first=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shopflow") as http:
        document = await http.get("/asyncapi.json")
        page = await http.get("/asyncapi")
        openapi = (await http.get("/openapi.json")).json()

    assert document.status_code == 200
    assert document.headers["content-type"] == "application/json"
    assert document.text == asyncapi_json()
    addresses = {channel["address"] for channel in document.json()["channels"].values()}
    assert {route.topic for route in COMMAND_ROUTES} <= addresses
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>shopflow AsyncAPI</title>" in page.text
    assert "AsyncApiStandalone.render" in page.text
    assert all(route.topic in page.text for route in COMMAND_ROUTES)
    # Documentation of the service, not part of the queries' OpenAPI document.
    assert not {"/asyncapi", "/asyncapi.json"} & set(openapi["paths"])
