"""The stream's commands that a chaos run sends over HTTP (CONTRACT.md, Writing over
HTTP), and the request each one is.

A share of the commands that have a route (charges, cart additions and removals, orders,
cancels; registrations, products and ships have none and stay on Kafka) is sent as a
client of the HTTP side sends it: the id the workload made for it is its
`Idempotency-Key`, and its command id is then the gateway's `http_command_id(subject,
key)`. The record's command carries that id, so the observer, the model and every check
know the command by it, whichever way each of its copies went.

The callers: a customer's own token (`sub` = its user id) for its cart, orders and
cancels; the payments service's (`sub` PAYMENTS_SUBJECT, may charge and read) for
charges: a customer may not charge.
"""

from dataclasses import dataclass
from typing import Any, Final

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    PlaceOrder,
    RemoveCartItem,
)
from shopflow.contracts.http_writes import http_command_id

PAYMENTS_SUBJECT: Final = "chaos-payments"
ROUTED: Final = (ChargePoints, AddCartItem, RemoveCartItem, PlaceOrder, CancelOrder)


@dataclass(frozen=True)
class HttpCall:
    """One write request: who sends it (`subject`, its token's `sub`), its key, and what."""

    subject: str
    key: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


def routed(command: Command) -> bool:
    return isinstance(command, ROUTED)


def over_http(command: Command) -> tuple[Command, HttpCall]:
    """The request that sends `command` (its id becomes the key), and the command as the
    gateway makes it of that request: the same, under the id derived from the key."""
    key = command.command_id
    call: HttpCall
    body: dict[str, Any]
    match command:
        case ChargePoints():
            path = f"/users/{command.user_id}/points/charges"
            call = HttpCall(PAYMENTS_SUBJECT, key, "POST", path, {"amount": command.amount})
        case AddCartItem():
            body = {"product_id": command.product_id, "quantity": command.quantity}
            path = f"/users/{command.user_id}/cart/items"
            call = HttpCall(str(command.user_id), key, "POST", path, body)
        case RemoveCartItem():
            path = f"/users/{command.user_id}/cart/items/{command.product_id}"
            params = {"quantity": command.quantity}
            call = HttpCall(str(command.user_id), key, "DELETE", path, params=params)
        case PlaceOrder():
            lines = [line.model_dump(mode="json") for line in command.items or ()]
            body = {"from_cart": True} if command.from_cart else {"items": lines}
            path = f"/users/{command.user_id}/orders"
            call = HttpCall(str(command.user_id), key, "POST", path, body)
        case CancelOrder():
            path = f"/users/{command.user_id}/orders/{command.order_id}/cancel"
            call = HttpCall(str(command.user_id), key, "POST", path)
        case _:
            raise ValueError(f"{type(command).__name__} has no HTTP route")
    derived = command.model_copy(update={"command_id": http_command_id(call.subject, key)})
    return derived, call
