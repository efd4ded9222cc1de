"""Request bodies are bounded: over the bound is 413 `too_large`, whether the length is
declared or the body streams in chunks, and the route never sees it."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from shopflow.queries.body_limit import limit_bodies

LIMIT = 1024


class Blob(BaseModel):
    data: str


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx.AsyncClient, list[int]]]:
    app = FastAPI()
    limit_bodies(app, LIMIT)
    read: list[int] = []  # the sizes of the bodies the route got

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        read.append(len(body))
        return {"bytes": len(body)}

    @app.post("/parsed")
    async def parsed(body: Blob) -> dict[str, int]:  # FastAPI reads and parses it first
        read.append(len(body.data))
        return {"bytes": len(body.data)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, read


async def test_a_body_within_the_bound_reaches_the_route(
    http: tuple[httpx.AsyncClient, list[int]],
) -> None:
    client, read = http

    answer = await client.post("/echo", content=b"x" * LIMIT)

    assert (answer.status_code, answer.json()) == (200, {"bytes": LIMIT})
    assert read == [LIMIT]


async def test_a_declared_length_over_the_bound_is_413_unread(
    http: tuple[httpx.AsyncClient, list[int]],
) -> None:
    client, read = http

    answer = await client.post("/echo", content=b"x" * (LIMIT + 1))

    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"
    assert read == []


@pytest.mark.parametrize("path", ["/echo", "/parsed"])
async def test_a_chunked_body_is_counted_as_it_comes_and_stopped_past_the_bound(
    http: tuple[httpx.AsyncClient, list[int]], path: str
) -> None:
    client, read = http

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"data": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    answer = await client.post(path, content=chunks())

    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")
    assert read == []
