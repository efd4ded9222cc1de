"""The cart and top-products queries over HTTP, against the session's real database.

Rows are inserted directly (tests.support.seeding, not through the command handlers),
keeping the books consistent: an order's total is the sum of its lines, it has one
payment and one 'use' point transaction of -total, and the balance is the charges minus
the uses (persistence/reconciliation.py checks this over the whole database at session
end).

The products table is shared with every other test, so top-products tests look at a
window of their own: a `now` in a far-future week of their own, where no other test's
orders fall.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.tables import cart_items, products
from shopflow.queries.auth import SCOPE_READ
from shopflow.queries.http import create_http_app
from shopflow.queries.read_model import ReadModel
from shopflow.runtime import Runtime
from tests.support.ids import new_entity_id
from tests.support.seeding import seed_order, seed_product, seed_user
from tests.support.signing_keys import accepting, bearer, ec_key


def a_week_of_its_own() -> datetime:
    """A `now` in a far-future week no other test (nor the service's clock) uses."""
    return datetime(2040, 1, 1, 12, tzinfo=UTC) + timedelta(weeks=new_entity_id() % 250_000)


@asynccontextmanager
async def http_at(engine: AsyncEngine, now: datetime) -> AsyncIterator[httpx.AsyncClient]:
    """The read side at `now`, asked by a service that may read every user (tokens are
    tests/unit/test_http_auth.py's concern)."""
    signer = ec_key()
    read_model = ReadModel(engine)
    app = create_http_app(read_model, {}, clock=lambda: now, authenticator=accepting(signer))
    transport = httpx.ASGITransport(app=app)
    headers = bearer(signer.token(sub=None, scope=SCOPE_READ))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://shopflow", headers=headers
    ) as client:
        yield client
    await read_model.close()


async def test_a_cart_with_lines_shows_names_unit_prices_and_the_total(service: Runtime) -> None:
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection)
        first, second = sorted([new_entity_id(), new_entity_id()])
        for product_id, name, price in [(second, "Teapot", 1250), (first, "Mug", 300)]:
            await connection.execute(
                insert(products).values(
                    product_id=product_id, name=name, price=price, stock=9, stock_added=9
                )
            )
        await connection.execute(
            insert(cart_items),
            [
                {"user_id": user_id, "product_id": second, "quantity": 2},
                {"user_id": user_id, "product_id": first, "quantity": 3},
            ],
        )

    async with http_at(service.engine, datetime.now(UTC)) as http:
        answer = await http.get(f"/users/{user_id}/cart")

    assert answer.status_code == 200
    assert answer.json() == {
        "user_id": user_id,
        "items": [
            {"product_id": first, "name": "Mug", "unit_price": 300, "quantity": 3},
            {"product_id": second, "name": "Teapot", "unit_price": 1250, "quantity": 2},
        ],
        "total": 3 * 300 + 2 * 1250,
    }


async def test_the_empty_cart_of_a_known_user_is_200_with_no_items(service: Runtime) -> None:
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection)

    async with http_at(service.engine, datetime.now(UTC)) as http:
        answer = await http.get(f"/users/{user_id}/cart")

    assert answer.status_code == 200
    assert answer.json() == {"user_id": user_id, "items": [], "total": 0}


async def test_the_cart_of_an_unknown_user_is_404_unknown_user(service: Runtime) -> None:
    async with http_at(service.engine, datetime.now(UTC)) as http:
        answer = await http.get(f"/users/{new_entity_id()}/cart")

    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_user"


async def test_top_products_count_only_the_last_72_hours(service: Runtime) -> None:
    now = a_week_of_its_own()
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection, balance=100_000)
        too_old = await seed_product(connection, name="Too old")
        recent = await seed_product(connection, name="Recent")
        not_yet = await seed_product(connection, name="Not yet")
        await seed_order(connection, user_id, [(too_old, 50, 10)], now - timedelta(hours=73))
        await seed_order(connection, user_id, [(recent, 1, 10)], now - timedelta(hours=71))
        await seed_order(connection, user_id, [(recent, 2, 10)], now)
        await seed_order(connection, user_id, [(not_yet, 50, 10)], now + timedelta(hours=1))

    async with http_at(service.engine, now) as http:
        answer = await http.get("/products/top")

    assert answer.status_code == 200
    assert answer.json() == {
        "window_hours": 72,
        "products": [{"product_id": recent, "name": "Recent", "units_sold": 3}],
    }


async def test_top_products_ties_are_broken_by_the_lower_product_id(service: Runtime) -> None:
    now = a_week_of_its_own()
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection, balance=100_000)
        tied = [await seed_product(connection, name=f"Tied {i}") for i in range(3)]
        best = await seed_product(connection, name="Best")
        # One order per tied product, in descending id order: insertion order must not matter.
        for product_id in sorted(tied, reverse=True):
            await seed_order(connection, user_id, [(product_id, 4, 10)], now - timedelta(hours=1))
        await seed_order(connection, user_id, [(best, 5, 10)], now - timedelta(hours=2))

    async with http_at(service.engine, now) as http:
        answer = await http.get("/products/top")

    assert answer.status_code == 200
    assert [(p["product_id"], p["units_sold"]) for p in answer.json()["products"]] == [
        (best, 5),
        *[(product_id, 4) for product_id in sorted(tied)],
    ]


async def test_top_products_lists_at_most_five_most_sold_first(service: Runtime) -> None:
    now = a_week_of_its_own()
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection, balance=100_000)
        by_units = {
            units: await seed_product(connection, name=f"Sold {units}") for units in range(1, 8)
        }
        # Every product in one order, and the most sold one over two orders.
        await seed_order(
            connection,
            user_id,
            [(product_id, units, 10) for units, product_id in by_units.items() if units != 7],
            now - timedelta(hours=10),
        )
        await seed_order(connection, user_id, [(by_units[7], 3, 10)], now - timedelta(hours=20))
        await seed_order(connection, user_id, [(by_units[7], 4, 10)], now - timedelta(hours=30))

    async with http_at(service.engine, now) as http:
        answer = await http.get("/products/top")

    assert answer.status_code == 200
    assert answer.json()["products"] == [
        {"product_id": by_units[units], "name": f"Sold {units}", "units_sold": units}
        for units in (7, 6, 5, 4, 3)
    ]


async def test_products_top_is_not_shadowed_by_products_by_id(service: Runtime) -> None:
    async with service.engine.begin() as connection:
        product_id = await seed_product(connection, name="Lamp", price=4200, stock=3)

    async with http_at(service.engine, a_week_of_its_own()) as http:
        top = await http.get("/products/top")
        by_id = await http.get(f"/products/{product_id}")

    assert top.status_code == 200
    assert top.json() == {"window_hours": 72, "products": []}
    assert by_id.status_code == 200
    assert by_id.json() == {"product_id": product_id, "name": "Lamp", "price": 4200, "stock": 3}


async def test_top_products_carry_a_tag_and_a_client_holding_it_gets_304(
    service: Runtime,
) -> None:
    now = a_week_of_its_own()
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection, balance=100_000)
        product_id = await seed_product(connection, name="Kettle")
        await seed_order(connection, user_id, [(product_id, 2, 10)], now - timedelta(hours=1))

    async with http_at(service.engine, now) as http:
        first = await http.get("/products/top")
        etag = first.headers["etag"]
        again = await http.get("/products/top", headers={"If-None-Match": etag})
        other = await http.get("/products/top", headers={"If-None-Match": '"not-it"'})
        async with service.engine.begin() as connection:
            await seed_order(connection, user_id, [(product_id, 1, 10)], now - timedelta(hours=1))
        changed = await http.get("/products/top", headers={"If-None-Match": etag})

    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=1"
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert other.status_code == 200
    assert other.json() == first.json()
    assert changed.status_code == 200  # another answer, another tag
    assert changed.headers["etag"] != etag
    assert changed.json()["products"] == [
        {"product_id": product_id, "name": "Kettle", "units_sold": 3}
    ]
