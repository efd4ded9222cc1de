"""Request bodies bounded like the Kafka envelope (`contracts.limits.MAX_MESSAGE_BYTES`):
a larger one is 413 `too_large` in the contract's error shape, and is never read whole
into memory.

An ASGI middleware rather than a check in each route: FastAPI reads a body completely
before any route code runs. A declared `Content-Length` over the bound is refused before
a byte is read; a body without one (chunked) is counted as it streams in, and the read
that passes the bound raises `BodyTooLarge`. Whatever the app then answers (FastAPI turns
an error while reading a body into its own 400) is dropped for the 413.
"""

from typing import Final

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE: Final = "too_large"


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            response = _too_large(self._max_bytes)
            await response(scope, receive, send)
            return
        seen = 0
        overflowed = started = False

        async def bounded() -> Message:
            nonlocal seen, overflowed
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_bytes:
                    overflowed = True
                    raise BodyTooLarge(self._max_bytes)
            return message

        async def unless_overflowed(message: Message) -> None:
            nonlocal started
            if overflowed:
                return  # the app's answer to a body it could not read: ours instead
            started = True
            await send(message)

        try:
            await self._app(scope, bounded, unless_overflowed)
        except Exception:
            if not overflowed:
                raise  # raised after the overflow, it is the app's reaction to it
        if overflowed and not started:
            await _too_large(self._max_bytes)(scope, receive, send)


def limit_bodies(app: FastAPI, max_bytes: int) -> None:
    app.add_middleware(BodyLimit, max_bytes=max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": TOO_LARGE, "detail": f"the request body is over {limit} bytes"},
        status_code=413,
        headers={"Connection": "close"},
    )
