"""Commands over HTTP (CONTRACT.md, Writing over HTTP): each write request becomes the
same command on the same topic, keyed as every sender keys it, sent as the principal
`shopflow-gateway`, and is answered with its result from the ledger.

One ledger, whichever way in: the request's command id is its caller's `Idempotency-Key`
(`contracts.http_writes.http_command_id`). Before sending, the ledger is asked: a spent
id with the same payload is answered with its stored result (the same `event_id`), with
another payload 422 `idempotency_conflict`; nothing is sent again. Otherwise the command
is sent and the request waits (`Prefer: wait`, default 5 s, at most 30) for the ledger's
announcement (`queries.command_results`); without a result by then, 202 with `Location:
/commands/{id}`. Two requests with one key in flight both send it, and both are answered
with its one result (the second is a duplicate to the consumers). A send whose outcome
is unknown (Kafka away) is 503 with `Retry-After`: the retry, same key, is idempotent.
So is a command the applier answered `temporarily_unavailable` (announced, not stored),
and one whose ledger cannot be read until the wait ends (the database away). A ledger
that cannot be read before sending is no reason to refuse: the look is only a shortcut,
and the consumers' own ledger decides what a resent id comes to.

It lives beside the composition root, not in `queries`, because it publishes.
"""

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    PlaceOrder,
    RemoveCartItem,
)
from shopflow.contracts.common import OrderId, ProductId, Quantity, UserId
from shopflow.contracts.events import (
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderRejected,
    PointsCharged,
    PointsChargeRejected,
    RejectionReason,
    ResultEvent,
    parse_event,
)
from shopflow.contracts.http_writes import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    CartItemRequest,
    ChargeRequest,
    PlaceOrderRequest,
    http_command_id,
    http_status,
)
from shopflow.contracts.topics import ROUTES_BY_TYPE
from shopflow.producers.client import ShopflowClient
from shopflow.queries.answers import ErrorAnswer, PendingAnswer, RejectionAnswer
from shopflow.queries.auth import (
    BEARER,
    SCOPE_POINTS_CHARGE,
    SCOPE_WRITE,
    Caller,
    Forbidden,
    may_act_for_user,
    may_charge_points,
)
from shopflow.queries.command_results import (
    AnsweredUnavailable,
    CommandResults,
    LedgerUnreachable,
    StoredResult,
    Watch,
)
from shopflow.queries.http import AUTH_RESPONSES
from shopflow.write_limits import WriteLimits

log = logging.getLogger(__name__)

WAIT_DEFAULT_S = 5
WAIT_MAX_S = 30
RETRY_AFTER_S = 1
SEND_TIMEOUT_S = 10
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d{1,6})(?:$|[,;\s])", re.IGNORECASE)
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def prefer_wait_s(prefer: str | None) -> int:
    """RFC 7240's `Prefer: wait=N`, bounded to WAIT_MAX_S; WAIT_DEFAULT_S without it."""
    found = _PREFER_WAIT.search(prefer or "")
    return WAIT_DEFAULT_S if found is None else min(int(found.group(1)), WAIT_MAX_S)


class BadWrite(Exception):
    """A write refused before anything is sent: a 4xx with the contract's error shape."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class CommandGateway:
    def __init__(
        self,
        results: CommandResults,
        sender: ShopflowClient | None = None,
        limits: WriteLimits | None = None,
    ) -> None:
        """`sender`: the client commands are sent with, started by whoever runs the app
        (`attach` it then: its credentials are read only when the app starts). `limits`:
        per-caller rate limits, none without."""
        self._results = results
        self._sender = sender
        self._limits = limits

    async def refusal(self, caller: str) -> Response | None:
        """429 if `caller` is over a rate limit (the write counted either way)."""
        if self._limits is None:
            return None
        over = await self._limits.check(caller)
        if over is None:
            return None
        return JSONResponse(
            {"error": "rate_limited", "detail": f"over {over.limit} for this caller"},
            status_code=429,
            headers={"Retry-After": str(over.retry_after_s)},
        )

    def attach(self, sender: ShopflowClient) -> None:
        self._sender = sender

    async def submit(self, command: Command, wait_s: int) -> Response:
        fingerprint = ROUTES_BY_TYPE[type(command)].fingerprint(command)
        # Watched from before the first look: that look is both the check before sending
        # and the wait's own, and no announcement after it is missed.
        async with self._results.watching(command.command_id) as watch:
            stored, looked = await _look_if_readable(watch)
            if stored is None:
                if self._sender is None:
                    return _unavailable("this process sends no commands yet; send it again")
                try:
                    # Bounded: a broker that does not answer must not hold the request for
                    # the producer's own timeouts. Sent or not, the retry is idempotent.
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await self._sender.send(command)
                except (KafkaError, TimeoutError) as error:
                    log.warning("a command over HTTP could not be sent: %r", error)
                    return _unavailable("Kafka cannot be reached; send it again with the same key")
                try:
                    stored = await watch.until(wait_s, looked=looked, stop_if_unavailable=True)
                except AnsweredUnavailable:
                    return _unavailable("nothing was applied; send it again with the same key")
                except LedgerUnreachable:
                    return _unavailable("the database cannot be reached; send it again later")
        if stored is None:
            location = f"/commands/{command.command_id}"
            return JSONResponse(
                {"command_id": command.command_id, "status": "pending"},
                status_code=202,
                headers={"Location": location},
            )
        if stored.payload_sha256 != fingerprint:
            return JSONResponse(
                {"error": RejectionReason.IDEMPOTENCY_CONFLICT.value, "result": None},
                status_code=422,
            )
        return _answer(stored)


async def _look_if_readable(watch: Watch) -> tuple[StoredResult | None, bool]:
    """The result if the ledger has it, and whether the look was made. A ledger that
    cannot be read is no reason not to send: the look only saves a send."""
    try:
        return await watch.look(), True
    except LedgerUnreachable as error:
        log.warning("the ledger could not be read before a send: %s", error)
        return None, False


def _answer(stored: StoredResult) -> Response:
    """The stored result as the response: its bytes for an accepted command, inside
    `{"error", "result"}` for a rejected one."""
    event = parse_event(stored.result_json)
    status = http_status(event)
    if status < 300:
        return Response(stored.result_json, status_code=status, media_type="application/json")
    reason = json.dumps(str(getattr(event, "reason", "")))
    body = f'{{"error":{reason},"result":{stored.result_json}}}'
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        {"error": RejectionReason.TEMPORARILY_UNAVAILABLE.value, "result": None, "detail": detail},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# The responses every write documents beside its success and its rejections (`rejected`).
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before sending it again",
        "required": True,
        "schema": {"type": "integer"},
    }
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    202: {
        "model": PendingAnswer,
        "description": "no result within the wait: `Location: /commands/{command_id}`",
        "headers": {
            "Location": {
                "description": "`/commands/{command_id}`, where the result will be",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
    400: {
        "model": ErrorAnswer,
        "description": "`idempotency_key_missing`: no `Idempotency-Key` header",
    },
    413: {
        "model": ErrorAnswer,
        "description": "`too_large`: a body over 64 KiB, the Kafka envelope's bound",
    },
    429: {
        "model": ErrorAnswer,
        "description": "`rate_limited`: over this caller's limit; `Retry-After`",
        "headers": _RETRY_AFTER,
    },
    422: {
        "model": ErrorAnswer,
        "description": "`idempotency_conflict` (the key was used with another body; "
        '`"result": null`), or `invalid_request`: a bad parameter, body or key',
    },
}


def rejected(event: type[ResultEvent]) -> dict[int | str, dict[str, Any]]:
    """A write's rejections, `{"error": reason, "result": event}` (`RejectionAnswer`)."""
    answer = RejectionAnswer[event]  # type: ignore[valid-type]
    return {
        404: {
            "model": answer,
            "description": "`unknown_user`, `unknown_product` or `unknown_order`",
        },
        409: {
            "model": answer,
            "description": "another business reason (`insufficient_points`, ...)",
        },
        503: {
            "model": answer,
            "description": "`temporarily_unavailable`, or Kafka cannot be reached (`result` "
            "null): `Retry-After`; send it again with the same key",
            "headers": _RETRY_AFTER,
        },
    }


def command_routes(
    gateway: CommandGateway, caller_of: Callable[..., Awaitable[Caller]]
) -> APIRouter:
    """The write routes, each needing a token (`caller_of`, the authenticator's)."""
    router = APIRouter(responses=WRITE_RESPONSES, route_class=_token_first(caller_of))
    authenticated = Depends(caller_of)

    async def key_of(
        idempotency_key: Annotated[
            str | None, Header(alias=IDEMPOTENCY_KEY_HEADER, max_length=256)
        ] = None,
    ) -> str:
        if idempotency_key is None:
            raise BadWrite(400, "idempotency_key_missing", f"send an {IDEMPOTENCY_KEY_HEADER}")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH or not _KEY.fullmatch(idempotency_key):
            raise BadWrite(
                422, "invalid_request", f"{IDEMPOTENCY_KEY_HEADER} is 1-64 of [A-Za-z0-9._:-]"
            )
        return idempotency_key

    key = Depends(key_of)

    Prefer = Annotated[
        str | None, Header(description="RFC 7240: `wait=N` seconds (default 5, at most 30)")
    ]

    @dataclass(frozen=True)
    class Write:
        """What every write route gets: its caller, its key and how long it waits."""

        caller: Caller
        key: str
        wait_s: int

        def acting_for(self, user_id: int) -> None:
            if not may_act_for_user(self.caller, user_id):
                raise Forbidden(f"this token may not act for user {user_id}", scope=SCOPE_WRITE)

        async def send(self, build: Callable[[str], Command]) -> Response:
            try:
                command = build(http_command_id(self.caller.subject, self.key))
            except ValidationError as error:
                raise BadWrite(422, "invalid_request", _first_error(error)) from None
            refused = await gateway.refusal(self.caller.subject)
            if refused is not None:
                return refused
            return await gateway.submit(command, self.wait_s)

    # The token first (401 whatever else is wrong), then the key (400).
    async def write_of(
        caller: Caller = authenticated, idem: str = key, prefer: Prefer = None
    ) -> Write:
        return Write(caller, idem, prefer_wait_s(prefer))

    writing = Depends(write_of)
    UserPath = Annotated[UserId, Path()]

    @router.post(
        "/users/{user_id}/points/charges",
        status_code=200,
        response_model=PointsCharged,
        responses=rejected(PointsChargeRejected),
    )
    async def charge(user_id: UserPath, body: ChargeRequest, write: Write = writing) -> Response:
        """ChargePoints: needs the scope `shopflow:points:charge` (a customer's own token
        may not charge)."""
        if not may_charge_points(write.caller):
            raise Forbidden("this token may not charge points", scope=SCOPE_POINTS_CHARGE)
        return await write.send(
            lambda cid: ChargePoints(command_id=cid, user_id=user_id, amount=body.amount)
        )

    @router.post(
        "/users/{user_id}/cart/items",
        status_code=200,
        response_model=CartItemAdded,
        responses=rejected(CartItemRejected),
    )
    async def add_item(
        user_id: UserPath, body: CartItemRequest, write: Write = writing
    ) -> Response:
        """AddCartItem."""
        write.acting_for(user_id)
        return await write.send(
            lambda cid: AddCartItem(
                command_id=cid, user_id=user_id, product_id=body.product_id, quantity=body.quantity
            )
        )

    @router.delete(
        "/users/{user_id}/cart/items/{product_id}",
        status_code=200,
        response_model=CartItemRemoved,
        responses=rejected(CartItemRejected),
    )
    async def remove_item(
        user_id: UserPath,
        product_id: Annotated[ProductId, Path()],
        quantity: Annotated[Quantity, Query()],
        write: Write = writing,
    ) -> Response:
        """RemoveCartItem."""
        write.acting_for(user_id)
        return await write.send(
            lambda cid: RemoveCartItem(
                command_id=cid, user_id=user_id, product_id=product_id, quantity=quantity
            )
        )

    @router.post(
        "/users/{user_id}/orders",
        status_code=201,
        response_model=OrderPlaced,
        responses=rejected(OrderRejected),
    )
    async def place_order(
        user_id: UserPath, body: PlaceOrderRequest, write: Write = writing
    ) -> Response:
        """PlaceOrder: of `items`, or with `from_cart: true` of the cart."""
        write.acting_for(user_id)
        return await write.send(
            lambda cid: PlaceOrder(
                command_id=cid, user_id=user_id, items=body.items, from_cart=body.from_cart
            )
        )

    @router.post(
        "/users/{user_id}/orders/{order_id}/cancel",
        status_code=200,
        response_model=OrderCancelled,
        responses=rejected(OrderCancelRejected),
    )
    async def cancel_order(
        user_id: UserPath, order_id: Annotated[OrderId, Path()], write: Write = writing
    ) -> Response:
        """CancelOrder."""
        write.acting_for(user_id)
        return await write.send(
            lambda cid: CancelOrder(command_id=cid, user_id=user_id, order_id=order_id)
        )

    return router


def _token_first(caller_of: Callable[..., Awaitable[Caller]]) -> type[APIRoute]:
    """Routes that check the token before their body: FastAPI reads and decodes a body
    before any dependency runs, so a request with no token and a body that is not JSON
    would be 400 or 422 where the contract says 401. (The dependency checks it again;
    the verifier caches a token it has verified.)"""

    class TokenFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def token_first(request: Request) -> Response:
                await caller_of(await BEARER(request))
                return await handle(request)

            return token_first

    return TokenFirst


def answer_bad_writes(app: FastAPI) -> None:
    @app.exception_handler(BadWrite)
    async def bad_write(_: Request, exc: BadWrite) -> JSONResponse:
        return JSONResponse({"error": exc.reason, "detail": exc.detail}, status_code=exc.status)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
