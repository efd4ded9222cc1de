"""Reads for the HTTP side, straight from PostgreSQL (the source of truth)."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.domain.order_lifecycle import OrderStatus
from shopflow.domain.top_products import TOP_LIMIT, rank, window_end, window_start
from shopflow.persistence.bare_pool import BarePool
from shopflow.persistence.tables import (
    cart_items,
    order_lines,
    orders,
    point_balances,
    products,
    users,
)
from shopflow.queries.answers import CartAnswer, CartLineAnswer, ProductAnswer, TopProductAnswer
from shopflow.queries.history import History

# Units sold per product in [:start, :end), of orders not cancelled (CONTRACT.md: a
# cancellation takes its units back out). The window's lines come from their placed_at
# index; each one's order is a primary-key lookup.
_UNITS_SOLD = (
    select(order_lines.c.product_id, func.sum(order_lines.c.quantity))
    .join(orders, orders.c.order_id == order_lines.c.order_id)
    .where(
        order_lines.c.placed_at >= bindparam("start"),
        order_lines.c.placed_at < bindparam("end"),
        orders.c.status != OrderStatus.CANCELLED.value,
    )
    .group_by(order_lines.c.product_id)
)


# The hot reads (a product, a balance): SQLAlchemy Core statements compiled once, to the
# dialect's SQL, and run on a bare asyncpg pool (`persistence.bare_pool`). Building a
# select() per request cost about 190 µs of serve's CPU; running a built one through the
# engine about 75 µs more than the read itself (in-process, 2026-12-08: 112-119 µs a
# product read against 37-38 µs).
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_BALANCE = str(
    select(point_balances.c.balance)
    .where(point_balances.c.user_id == bindparam("user_id"))
    .compile(dialect=_DIALECT)
)
_PRODUCT = str(
    select(products.c.product_id, products.c.name, products.c.price, products.c.stock)
    .where(products.c.product_id == bindparam("product_id"))
    .compile(dialect=_DIALECT)
)


class ReadModel:
    def __init__(self, engine: AsyncEngine, reads: BarePool | None = None) -> None:
        """`reads`: the pool of the product and balance reads; by default one of the
        engine's URL and pool size, opened by the first read (`close` closes it)."""
        # Every read is one statement, consistent on its own: in autocommit it is one
        # round trip, where a transaction would add a BEGIN and a ROLLBACK.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.history = History(engine)  # a user's orders and points statement
        if reads is None:
            url = engine.url.render_as_string(hide_password=False)
            reads = BarePool(url, size=engine.pool.size())  # type: ignore[attr-defined]
        self._reads = reads

    async def close(self) -> None:
        await self._reads.stop()

    async def balance(self, user_id: int) -> int | None:
        row = await self._reads.fetchrow(_BALANCE, user_id)
        return None if row is None else int(row[0])

    async def product(self, product_id: int) -> ProductAnswer | None:
        row = await self._reads.fetchrow(_PRODUCT, product_id)
        if row is None:
            return None
        return ProductAnswer(product_id=row[0], name=row[1], price=row[2], stock=row[3])

    async def cart(self, user_id: int) -> CartAnswer | None:
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
            CartLineAnswer(
                product_id=row.product_id,
                name=row.name,
                unit_price=row.price,
                quantity=row.quantity,
            )
            for row in rows
            if row.product_id is not None
        ]
        total = sum(item.unit_price * item.quantity for item in items)
        return CartAnswer(user_id=user_id, items=items, total=total)

    async def top_products(self, now: datetime, limit: int = TOP_LIMIT) -> list[TopProductAnswer]:
        """The best sellers in the window at `now` (`domain.top_products`: its window and
        its ranking), from the lines of the orders not cancelled, the source of truth.

        `now` comes from the caller's clock (not SQL now()), so tests can move time.
        """
        window = {"start": window_start(now), "end": window_end(now)}
        async with self._engine.connect() as connection:
            # sum(bigint) is numeric in PostgreSQL (a Decimal here): back to int.
            units = {p: int(sold) for p, sold in await connection.execute(_UNITS_SOLD, window)}
        return await self.named(rank(units, limit))

    async def named(self, ranked: Sequence[tuple[int, int]]) -> list[TopProductAnswer]:
        """(product id, units sold) of ranked products, with their names."""
        names = await self.product_names([p for p, _ in ranked])
        return [
            TopProductAnswer(product_id=p, name=names.get(p, ""), units_sold=units)
            for p, units in ranked
        ]

    async def product_names(self, product_ids: Sequence[int]) -> dict[int, str]:
        if not product_ids:
            return {}
        statement = select(products.c.product_id, products.c.name).where(
            products.c.product_id.in_(list(product_ids))
        )
        async with self._engine.connect() as connection:
            return {row.product_id: row.name for row in await connection.execute(statement)}
