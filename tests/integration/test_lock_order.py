"""An order batch's product locks and a cart batch's inserted lines never wait on each
other, so the two cannot deadlock.

Inserting a row that references a product (a cart line, an order line) takes a
key-share lock on the product, in the order of the inserted rows, not of the products.
An order batch locks its products in product order. With `FOR UPDATE` those conflict:
a cart batch holding product 2 (its line inserted) and wanting product 1 deadlocked with
an order batch holding product 1 and wanting product 2 (`make bench`'s mix with two
workers hit it hundreds of times). The handlers lock `FOR NO KEY UPDATE`, which
conflicts with every other writer but not with key-share locks; this test plays that
interleaving step by step on two connections.
"""

import asyncio
import secrets

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.repositories import CartRepository, ProductRepository
from shopflow.persistence.tables import products
from tests.support.database import user_in_database

STEP_SECONDS = 3.0


async def test_an_order_batch_locking_products_never_waits_for_inserted_cart_lines(
    engine: AsyncEngine,
) -> None:
    user_id = await user_in_database(engine)
    low = secrets.randbelow(2**60) + 1
    high = low + 1
    async with engine.begin() as connection:
        await connection.execute(
            insert(products),
            [
                {"product_id": p, "name": "lock", "price": 1, "stock": 10, "stock_added": 10}
                for p in (low, high)
            ],
        )

    async with engine.connect() as cart_side, engine.connect() as order_side:
        cart_tx = await cart_side.begin()
        order_tx = await order_side.begin()
        # The cart batch inserts its line for the higher product first...
        await CartRepository(cart_side).set_quantities({(user_id, high): 1})
        # ...the order batch locks both products, in product order: it must not wait...
        locked = await asyncio.wait_for(
            ProductRepository(order_side).lock_many([low, high]), STEP_SECONDS
        )
        # ...and the cart batch's next line, for the lower product, must not either.
        await asyncio.wait_for(
            CartRepository(cart_side).set_quantities({(user_id, low): 1}), STEP_SECONDS
        )
        await order_tx.commit()
        await cart_tx.commit()

    assert sorted(locked) == [low, high]
