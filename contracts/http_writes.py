"""Writing over HTTP (CONTRACT.md): the request bodies, the `Idempotency-Key`, the command
id a caller's key becomes, and the HTTP status each result is answered with."""

import base64
import hashlib
from typing import Final, Literal

from pydantic import ConfigDict, Field

from shopflow.contracts.commands import OrderLine
from shopflow.contracts.common import ProductId, Quantity, WireModel
from shopflow.contracts.events import OrderPlaced, RejectionReason, ResultEvent
from shopflow.contracts.limits import (
    COMMAND_ID_PATTERN,
    MAX_CHARGE_AMOUNT,
    MAX_COMMAND_ID_LENGTH,
    MAX_ORDER_ITEMS,
)

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN: Final = COMMAND_ID_PATTERN  # 1-64 of [A-Za-z0-9._:-], as a command id
MAX_IDEMPOTENCY_KEY_LENGTH: Final = MAX_COMMAND_ID_LENGTH

# A request's command id: `http-` and 40 base32 characters (200 bits) of SHA-256 over the
# caller (its token's `sub`) and its key. Two callers' keys never meet, a caller's key is
# one command id for as long as the ledger keeps it, and the id is 45 characters, inside
# the contract's 64.
HTTP_COMMAND_ID_PREFIX: Final = "http-"
_DIGEST_CHARS = 40


def http_command_id(caller: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{caller}\n{idempotency_key}".encode()).digest()
    encoded = base64.b32encode(digest).decode("ascii").lower()
    return HTTP_COMMAND_ID_PREFIX + encoded[:_DIGEST_CHARS]


class ChargeRequest(WireModel):
    """POST /users/{user_id}/points/charges: ChargePoints."""

    amount: int = Field(ge=1, le=MAX_CHARGE_AMOUNT, examples=[10_000])


class CartItemRequest(WireModel):
    """POST /users/{user_id}/cart/items: AddCartItem."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"product_id": 7, "quantity": 2}]})

    product_id: ProductId
    quantity: Quantity


class PlaceOrderRequest(WireModel):
    """POST /users/{user_id}/orders: PlaceOrder, of `items` or with `from_cart: true`
    (the command's own rules decide: one of the two, distinct products)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [{"product_id": 7, "quantity": 2}]}, {"from_cart": True}]
        }
    )

    items: list[OrderLine] | None = Field(default=None, min_length=1, max_length=MAX_ORDER_ITEMS)
    from_cart: Literal[True] | None = None


# The business "no"s a client fixes by naming something that exists.
_NOT_FOUND: Final = frozenset(
    {RejectionReason.UNKNOWN_USER, RejectionReason.UNKNOWN_PRODUCT, RejectionReason.UNKNOWN_ORDER}
)


def http_status(event: ResultEvent) -> int:
    """The status a result is answered with: 201 for a placed order, 200 for another
    accepted command; 404 for what does not exist, 422 for an idempotency conflict, 503
    for `temporarily_unavailable`, 409 for any other business reason."""
    reason = getattr(event, "reason", None)
    if reason is None:
        return 201 if isinstance(event, OrderPlaced) else 200
    if reason in _NOT_FOUND:
        return 404
    if reason is RejectionReason.IDEMPOTENCY_CONFLICT:
        return 422
    if reason is RejectionReason.TEMPORARILY_UNAVAILABLE:
        return 503
    return 409
