"""A storefront team's "undo my order" button, tested against a real shopflow through the
plugin's fixtures: the order placed and cancelled with its typed commands, the stock, the
balance and the order's status read back over HTTP as the customer would."""

import secrets
import uuid

import httpx
import pytest

from shopflow.contracts.commands import (
    CancelOrder,
    ChargePoints,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    UpsertProduct,
)
from shopflow.contracts.events import (
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    RejectionReason,
)
from shopflow.producers.client import ShopflowClient
from shopflow.testing.tokens import TokenSigner

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _id() -> str:
    return uuid.uuid4().hex


async def test_an_undone_order_gives_back_its_points_and_its_stock(
    shopflow_client: ShopflowClient, shopflow_http: httpx.AsyncClient, shopflow_token: TokenSigner
) -> None:
    user_id, product_id = secrets.randbelow(2**62) + 1, secrets.randbelow(2**62) + 1
    for command in (
        RegisterUser(command_id=_id(), user_id=user_id, name="Undoer"),
        ChargePoints(command_id=_id(), user_id=user_id, amount=1_000),
        UpsertProduct(
            command_id=_id(), product_id=product_id, name="Lamp", price=300, stock_added=2
        ),
    ):
        await shopflow_client.send_and_wait(command)
    placed = await shopflow_client.send_and_wait(
        PlaceOrder(
            command_id=_id(), user_id=user_id, items=[OrderLine(product_id=product_id, quantity=2)]
        )
    )
    assert isinstance(placed, OrderPlaced)

    undo = CancelOrder(command_id=_id(), user_id=user_id, order_id=placed.order_id)
    cancelled = await shopflow_client.send_and_wait(undo)
    again = await shopflow_client.send_and_wait(
        CancelOrder(command_id=_id(), user_id=user_id, order_id=placed.order_id)
    )

    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.refunded, cancelled.balance) == (600, 1_000)
    assert isinstance(again, OrderCancelRejected)
    assert again.reason is RejectionReason.ORDER_CANCELLED
    customer = shopflow_token.headers(user=user_id)
    order = await shopflow_http.get(f"/users/{user_id}/orders/{placed.order_id}", headers=customer)
    assert order.json()["status"] == "cancelled"
    points = await shopflow_http.get(f"/users/{user_id}/points", headers=customer)
    assert points.json()["balance"] == 1_000
    product = await shopflow_http.get(f"/products/{product_id}")
    assert product.json()["stock"] == 2
