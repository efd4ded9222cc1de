"""The AsyncAPI document of the wire contract, generated from `contracts`.

The running subscribers take raw record batches (decoding is theirs, so that bad input
becomes a dead letter), which would document every payload as "anything". This builds a
never-connected broker that declares each topic with its real payload types instead,
from the same registry the service runs on, so the document cannot drift from the code.
`shopflow asyncapi` writes it; docs/asyncapi.json is the committed copy, and a test
checks that it is current. `shopflow serve` serves the same JSON at GET /asyncapi.json,
and at GET /asyncapi FastStream's HTML page rendering it (its script and style come
from FastStream's CDN, unpkg.com, so the page needs the browser online; the JSON does
not).
"""

import functools
import json
from typing import Any, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi import get_asyncapi_html

from shopflow.contracts.dead_letters import DeadLetter
from shopflow.contracts.topics import COMMAND_ROUTES, DEAD_LETTERS


def _documented_subscriber(broker: KafkaBroker, topic: str, payload: type[Any], doc: str) -> None:
    async def handle(command: Any) -> None:  # pragma: no cover - never runs
        return None

    handle.__annotations__["command"] = payload
    broker.subscriber(topic, title=f"{topic}:{payload.__name__}", description=doc)(handle)


def build_asyncapi(version: str = "0.1.0") -> AsyncAPI:
    broker = KafkaBroker("127.0.0.1:9092", description="Kafka key = the entity id, as decimal.")
    results: dict[str, list[type[Any]]] = {}
    for route in COMMAND_ROUTES:
        _documented_subscriber(
            broker,
            route.topic,
            route.command_type,
            f"{(route.command_type.__doc__ or '').strip()} Kafka key: `{route.key_field}`. "
            f"Answered on `{route.result_topic}` by {route.accepted_type.__name__} or "
            f"{route.rejected_type.__name__}.",
        )
        types = results.setdefault(route.result_topic, [])
        types += [t for t in (route.accepted_type, route.rejected_type) if t not in types]
    for topic, types in results.items():
        broker.publisher(
            topic,
            title=f"{topic}:results",
            description="One result event per command, published after its transaction "
            "commits; redeliveries repeat the same event_id.",
            schema=Union[tuple(types)],  # noqa: UP007 - a runtime union of classes
        )
    broker.publisher(
        DEAD_LETTERS,
        title=f"{DEAD_LETTERS}:DeadLetter",
        description="Messages that could not be decoded or broke the contract.",
        schema=DeadLetter,
    )
    return AsyncAPI(
        broker,
        title="shopflow",
        version=version,
        description="Commands in, one result event per command out (see CONTRACT.md).",
    )


# Each is built once per process (a broker is declared, then rendered, which takes a
# while): the document only changes with the code.


@functools.cache
def asyncapi_json() -> str:
    """The document as stable JSON (sorted keys), for a committed copy that diffs well."""
    document = json.loads(build_asyncapi().to_specification().to_json())
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@functools.cache
def asyncapi_html() -> str:
    """FastStream's HTML page rendering the document. Without its "try it out" plugin,
    which would post messages to an endpoint shopflow does not have."""
    return get_asyncapi_html(build_asyncapi().to_specification(), try_it_out_path=None)
