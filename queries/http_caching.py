"""HTTP caching of GET answers (RFC 9110 validators, RFC 9111 `Cache-Control`): an answer
carries an `ETag`, a strong validator made from its bytes, and the `Cache-Control` its
data allows; a request whose `If-None-Match` names that tag is answered 304 with no body.

The tag is a hash of the answer's bytes, so two processes (or two computations) that
make the same answer give it the same tag, and a client's revalidation works whichever
serve process answers it."""

import hashlib

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

JSON = "application/json"

# GET /products/top: a cache may keep it a second (the contract promises a placed order
# in it within 2 s: held by serve for SHOPFLOW_TOP_CACHE_MS, 0.5 s and at most 1 s, then
# by a cache for 1 s). No stale-while-revalidate: serving it stale would break that.
TOP_CACHE_CONTROL = "public, max-age=1"
# GET /products/{id}: public too, its stock a second old at most when fresh, and up to 10 s
# old while a cache asks again (the order is what checks the stock, not the page).
PRODUCT_CACHE_CONTROL = "public, max-age=1, stale-while-revalidate=10"
# A user's own data (balance, cart, orders, statement): no shared cache keeps it, and a
# client's copy is checked with its tag on every use (a 304 saves the answer's bytes, not
# the database's read: its version is the answer itself).
PRIVATE = "private, no-cache"


def entity_tag(body: bytes) -> str:
    """A strong `ETag` of `body` (quoted, as the header carries it)."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (or is `*`). Its comparison is the
    weak one (RFC 9110 13.1.2): `W/"x"` matches `"x"`."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def cacheable(request: Request, body: bytes, etag: str, cache_control: str) -> Response:
    """The JSON answer `body` with its validator and caching rule, or 304 when the
    request already holds it."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON, headers=headers)


def tagged(request: Request, answer: BaseModel, cache_control: str) -> Response:
    """`answer` as JSON, tagged by its bytes (`cacheable`): made once here, to hash and
    to send, rather than by FastAPI's `response_model` after the route returns."""
    body = answer.model_dump_json().encode()
    return cacheable(request, body, entity_tag(body), cache_control)
