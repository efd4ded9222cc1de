"""A user's orders and points statement over HTTP, from commands applied by the real
service: newest first, keyset pages that neither repeat nor skip a row while rows are
added, the names as ordered, 404s, and a customer who sees only their own."""

import httpx

from shopflow.contracts.commands import OrderLine, PlaceOrder, UpsertProduct
from shopflow.contracts.events import OrderPlaced, ProductUpserted
from shopflow.producers.client import ShopflowClient
from shopflow.testing.tokens import TokenSigner
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import funded_user, new_product


async def _place(client: ShopflowClient, user_id: int, product_id: int, quantity: int) -> int:
    event = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id("order"),
            user_id=user_id,
            items=[OrderLine(product_id=product_id, quantity=quantity)],
        )
    )
    assert isinstance(event, OrderPlaced)
    return event.order_id


async def test_orders_page_newest_first_and_inserts_never_repeat_or_skip_a_row(
    client: ShopflowClient, shopflow_http: httpx.AsyncClient
) -> None:
    user_id = await funded_user(client, 100_000)
    mug = await new_product(client, price=100, stock=1_000)
    placed = [await _place(client, user_id, mug, n) for n in range(1, 6)]

    first = (await shopflow_http.get(f"/users/{user_id}/orders", params={"limit": 2})).json()
    # Orders placed between two pages are newer than the first page: none enters a later
    # page, and none of the older ones moves.
    newer = await _place(client, user_id, mug, 9)
    seen = [o["order_id"] for o in first["orders"]]
    before = first["next_before"]
    while before is not None:
        page = (
            await shopflow_http.get(
                f"/users/{user_id}/orders", params={"limit": 2, "before": before}
            )
        ).json()
        seen += [o["order_id"] for o in page["orders"]]
        before = page["next_before"]

    assert seen == list(reversed(placed))
    latest = (await shopflow_http.get(f"/users/{user_id}/orders")).json()
    assert [o["order_id"] for o in latest["orders"]] == [newer, *reversed(placed)]
    assert latest["next_before"] is None
    assert latest["orders"][0]["status"] == "placed"
    assert latest["orders"][0]["items"] == [
        {"product_id": mug, "name": f"Product {mug % 1000}", "quantity": 9, "unit_price": 100}
    ]


async def test_an_order_shows_the_names_as_ordered_and_404s_name_what_is_unknown(
    client: ShopflowClient, shopflow_http: httpx.AsyncClient
) -> None:
    user_id = await funded_user(client, 10_000)
    other = await funded_user(client, 10_000)
    mug = await new_product(client, price=300, stock=5)
    order_id = await _place(client, user_id, mug, 2)
    renamed = await client.send_and_wait(
        UpsertProduct(
            command_id=new_command_id("rename"), product_id=mug, name="Cup", price=9, stock_added=0
        )
    )
    assert isinstance(renamed, ProductUpserted)

    answer = await shopflow_http.get(f"/users/{user_id}/orders/{order_id}")
    assert answer.status_code == 200
    order = answer.json()
    assert (order["order_id"], order["user_id"], order["status"], order["total"]) == (
        order_id,
        user_id,
        "placed",
        600,
    )
    assert (order["cancelled_at"], order["shipped_at"]) == (None, None)
    assert order["items"] == [
        {"product_id": mug, "name": f"Product {mug % 1000}", "quantity": 2, "unit_price": 300}
    ]

    someone_elses = await shopflow_http.get(f"/users/{other}/orders/{order_id}")
    assert (someone_elses.status_code, someone_elses.json()["error"]) == (404, "unknown_order")
    nobody = new_entity_id()
    for path in (f"/users/{nobody}/orders", f"/users/{nobody}/points/transactions"):
        unknown = await shopflow_http.get(path)
        assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_user")
    too_many = await shopflow_http.get(f"/users/{user_id}/orders", params={"limit": 101})
    assert (too_many.status_code, too_many.json()["error"]) == (422, "invalid_request")


async def test_the_statement_shows_each_move_with_the_balance_after_it(
    client: ShopflowClient, shopflow_http: httpx.AsyncClient
) -> None:
    user_id = await funded_user(client, 1_000)
    mug = await new_product(client, price=250, stock=5)
    order_id = await _place(client, user_id, mug, 2)

    page = (
        await shopflow_http.get(f"/users/{user_id}/points/transactions", params={"limit": 1})
    ).json()
    rest = (
        await shopflow_http.get(
            f"/users/{user_id}/points/transactions",
            params={"before": page["next_before"]},
        )
    ).json()

    moves = [
        (t["kind"], t["amount"], t["balance_after"], t["order_id"])
        for t in page["transactions"] + rest["transactions"]
    ]
    assert moves == [("use", -500, 500, order_id), ("charge", 1_000, 1_000, None)]
    assert rest["next_before"] is None


async def test_a_customer_reads_their_own_history_and_no_one_elses(
    client: ShopflowClient, shopflow_http: httpx.AsyncClient, shopflow_token: TokenSigner
) -> None:
    user_id = await funded_user(client, 100)
    other = await funded_user(client, 100)
    own = shopflow_token.headers(user=user_id)

    assert (await shopflow_http.get(f"/users/{user_id}/orders", headers=own)).status_code == 200
    for path in (f"/users/{other}/orders", f"/users/{other}/points/transactions"):
        assert (await shopflow_http.get(path, headers=own)).status_code == 403
