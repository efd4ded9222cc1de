"""Reads for the HTTP side, straight from PostgreSQL (the source of truth)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.domain.top_products import TOP_LIMIT, window_end, window_start
from shopflow.persistence.tables import cart_items, order_lines, point_balances, products, users


@dataclass(frozen=True)
class ProductView:
    product_id: int
    name: str
    price: int
    stock: int


@dataclass(frozen=True)
class CartLineView:
    product_id: int
    name: str
    unit_price: int
    quantity: int


@dataclass(frozen=True)
class CartView:
    user_id: int
    items: list[CartLineView]
    total: int


@dataclass(frozen=True)
class TopProductView:
    product_id: int
    name: str
    units_sold: int


class ReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        # Every read is one statement, consistent on its own: in autocommit it is one
        # round trip, where a transaction would add a BEGIN and a ROLLBACK.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def balance(self, user_id: int) -> int | None:
        statement = select(point_balances.c.balance).where(point_balances.c.user_id == user_id)
        async with self._engine.connect() as connection:
            return (await connection.execute(statement)).scalar_one_or_none()

    async def product(self, product_id: int) -> ProductView | None:
        statement = select(
            products.c.product_id, products.c.name, products.c.price, products.c.stock
        ).where(products.c.product_id == product_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).first()
        return None if row is None else ProductView(row.product_id, row.name, row.price, row.stock)

    async def cart(self, user_id: int) -> CartView | None:
        """The user's cart lines at today's prices, or None when the user does not exist.

        One statement (users LEFT JOIN the lines), so the user check and the lines come
        from the same snapshot: no rows means no user, one row of NULLs an empty cart.
        """
        lines = cart_items.join(products, products.c.product_id == cart_items.c.product_id)
        statement = (
            select(
                users.c.user_id,
                cart_items.c.product_id,
                products.c.name,
                products.c.price,
                cart_items.c.quantity,
            )
            .select_from(users.outerjoin(lines, cart_items.c.user_id == users.c.user_id))
            .where(users.c.user_id == user_id)
            .order_by(cart_items.c.product_id)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        if not rows:
            return None
        items = [
            CartLineView(row.product_id, row.name, row.price, row.quantity)
            for row in rows
            if row.product_id is not None
        ]
        total = sum(item.unit_price * item.quantity for item in items)
        return CartView(user_id=user_id, items=items, total=total)

    async def top_products(self, now: datetime, limit: int = TOP_LIMIT) -> list[TopProductView]:
        """The best sellers in the window at `now` (domain.top_products: minute resolution),
        most units first, ties by lower id, from the order lines (the source of truth).

        `now` comes from the caller's clock (not SQL now()), so tests can move time.
        """
        units_sold = func.sum(order_lines.c.quantity).label("units_sold")
        statement = (
            select(order_lines.c.product_id, products.c.name, units_sold)
            .join(products, products.c.product_id == order_lines.c.product_id)
            .where(
                order_lines.c.placed_at >= window_start(now),
                order_lines.c.placed_at < window_end(now),
            )
            .group_by(order_lines.c.product_id, products.c.name)
            .order_by(units_sold.desc(), order_lines.c.product_id.asc())
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        # sum(bigint) is numeric in PostgreSQL (a Decimal here): back to int.
        return [TopProductView(row.product_id, row.name, int(row.units_sold)) for row in rows]

    async def product_names(self, product_ids: Sequence[int]) -> dict[int, str]:
        if not product_ids:
            return {}
        statement = select(products.c.product_id, products.c.name).where(
            products.c.product_id.in_(list(product_ids))
        )
        async with self._engine.connect() as connection:
            return {row.product_id: row.name for row in await connection.execute(statement)}
