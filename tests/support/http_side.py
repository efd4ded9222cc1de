"""An HTTP side of its own, as `shopflow serve --no-consume` runs it, in process: its
lifespan run (its start's checks, its clients), requests through the ASGI transport."""

import contextlib
from collections.abc import AsyncIterator

import httpx

from shopflow.app import create_app
from shopflow.settings import Settings


@contextlib.asynccontextmanager
async def http_side(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, consume=False, prepare_first=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://shopflow"
        ) as http,
    ):
        yield http
