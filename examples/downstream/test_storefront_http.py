"""examples/storefront_http.py against a real shopflow through the plugin's fixtures: a
storefront that speaks only HTTP charges, fills a cart, orders and cancels; the same
session again is answered the same, with the same event ids."""

import secrets
import uuid

import httpx
import pytest

from examples.storefront_http import Storefront
from shopflow.contracts.commands import RegisterUser, UpsertProduct
from shopflow.producers.client import ShopflowClient
from shopflow.testing.tokens import TokenSigner

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_storefront_speaking_only_http_shops_and_can_repeat_itself(
    shopflow_client: ShopflowClient, shopflow_http: httpx.AsyncClient, shopflow_token: TokenSigner
) -> None:
    user_id, product_id = secrets.randbelow(2**62) + 1, secrets.randbelow(2**62) + 1
    await shopflow_client.send_and_wait(
        RegisterUser(command_id=uuid.uuid4().hex, user_id=user_id, name="Shopper")
    )
    await shopflow_client.send_and_wait(
        UpsertProduct(
            command_id=uuid.uuid4().hex,
            product_id=product_id,
            name="Kettle",
            price=2_500,
            stock_added=4,
        )
    )
    storefront = Storefront(
        shopflow_http,
        shopflow_token(user=user_id),
        shopflow_token(scopes=["shopflow:points:charge"], subject="payments"),
        session=f"s-{uuid.uuid4().hex[:8]}",
    )

    events = await storefront.shop(user_id, product_id)
    again = await storefront.shop(user_id, product_id)

    assert [e["type"] for e in events] == [
        "PointsCharged",
        "CartItemAdded",
        "OrderPlaced",
        "OrderCancelled",
    ]
    assert events[3]["balance"] == 10_000  # the order's 5,000 points back
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]
    product = await shopflow_http.get(f"/products/{product_id}")
    assert product.json()["stock"] == 4
