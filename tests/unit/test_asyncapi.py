import json
from pathlib import Path

from contracts.topics import COMMAND_ROUTES
from shopflow.asyncapi import asyncapi_json

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
