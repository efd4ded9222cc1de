"""The read side's hottest GETs answered in front of its middleware and routing: top
products, a product, and a user's balance asked with a token that may read it.

What such a request costs is mostly the HTTP stack around its read. Under wrk
(`tests.bench.http_queries`, 2026-12-07) serve spent 99 µs of CPU a request on
GET /products/top through FastAPI's route (exception handling, the body limit, routing,
dependencies) and 39 µs in front of them, as much as a bare Starlette app answering
constant bytes (41 µs). This layer, outermost in the app's middleware stack, answers the
plain case of each of these GETs with the route's own answer (`queries.read_pages`): 200
(or 304 for its tag), or 404 for an unknown product or user.

Anything else goes on to the app, whose route answers it the contract's way: another
method or path, an id not in plain decimal or out of range (422 there), a missing,
refused or insufficient token (401, 403), and a read that failed (the database away:
503). So each rule is still decided in one place, by the route or by what both share."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shopflow.contracts.limits import decimal_entity_id
from shopflow.queries.auth import TokenVerifier, may_read_user
from shopflow.queries.read_pages import NotFound, ReadPages, not_found_answer

TOP = "/products/top"
PRODUCT = "/products/"
USER, POINTS = "/users/", "/points"


class HotReads:
    def __init__(self, app: ASGIApp, pages: ReadPages, verifier: TokenVerifier) -> None:
        self._app = app
        self._pages = pages
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response | None = None
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                response = await self._answer(Request(scope), scope["path"])
            except NotFound as unknown:
                response = not_found_answer(unknown)
            except Exception:
                response = None  # the route answers it, errors and all
        if response is None:
            await self._app(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def _answer(self, request: Request, path: str) -> Response | None:
        """The answer, or None to leave the request to the app."""
        if path == TOP:
            return await self._pages.top(request)
        if path.startswith(PRODUCT):
            product_id = decimal_entity_id(path[len(PRODUCT) :])
            return None if product_id is None else await self._pages.product(request, product_id)
        if path.startswith(USER) and path.endswith(POINTS):
            user_id = decimal_entity_id(path[len(USER) : -len(POINTS)])
            if user_id is None or not self._may_read(request, user_id):
                return None
            return await self._pages.points(request, user_id)
        return None

    def _may_read(self, request: Request, user_id: int) -> bool:
        """Whether the request's bearer token is valid and may read `user_id`; the route
        says why not (401, 403)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        try:
            caller = self._verifier.verify(token)
        except Exception:
            return False
        return may_read_user(caller, user_id)
