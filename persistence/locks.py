"""Locks a batch takes before running its commands, always in one global order: the
users' balance rows by user id, then products by product id.

A batch holds every row lock it takes until it commits, across all its commands, so
locks taken command by command (in offset order) could cycle with another batch's and
deadlock. Taking them all first, sorted, makes every batch acquire in the same order.
The balance row doubles as the user's mutex: every command that changes a user's cart
or points runs while holding it, so cart rows need no lock order of their own.
"""

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import cart_items, point_balances, products


async def lock_in_order(
    connection: AsyncConnection,
    *,
    user_ids: Iterable[int] = (),
    product_ids: Iterable[int] = (),
    carts_of: Iterable[int] = (),
) -> None:
    users = sorted(set(user_ids))
    if users:
        await connection.execute(
            select(point_balances.c.user_id)
            .where(point_balances.c.user_id.in_(users))
            .order_by(point_balances.c.user_id)
            .with_for_update()
        )
    wanted = set(product_ids)
    cart_owners = sorted(set(carts_of))
    if cart_owners:
        # Safe to read unlocked: those carts' owners are locked above.
        statement = select(cart_items.c.product_id).where(cart_items.c.user_id.in_(cart_owners))
        wanted.update((await connection.execute(statement)).scalars())
    if wanted:
        await connection.execute(
            select(products.c.product_id)
            .where(products.c.product_id.in_(sorted(wanted)))
            .order_by(products.c.product_id)
            .with_for_update()
        )
