"""Repositories over one connection (the batch's transaction).

Reads that precede a write lock their row (`FOR UPDATE`), so two commands on the same
user or product settle in turn instead of overwriting each other.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.catalog import Product
from domain.orders import PricedOrder
from persistence.tables import (
    cart_items,
    order_lines,
    orders,
    point_balances,
    point_transactions,
    products,
    users,
)


class UserRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def existing(self, user_ids: Sequence[int]) -> set[int]:
        statement = select(users.c.user_id).where(users.c.user_id.in_(sorted(set(user_ids))))
        return set((await self._connection.execute(statement)).scalars())

    async def add_all(self, new: Sequence[tuple[int, str]]) -> int:
        """Insert (user id, name) rows, skipping ids taken meanwhile (the primary key
        settles races); returns how many were inserted."""
        statement = (
            pg_insert(users)
            .on_conflict_do_nothing(index_elements=[users.c.user_id])
            .returning(users.c.user_id)
        )
        result = await self._connection.execute(
            statement, [{"user_id": u, "name": n} for u, n in sorted(new)]
        )
        return len(result.scalars().all())


class PointsRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def open_accounts(self, user_ids: Sequence[int]) -> None:
        await self._connection.execute(
            insert(point_balances), [{"user_id": u, "balance": 0} for u in sorted(user_ids)]
        )

    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Balances of those users that exist, rows locked in user id order."""
        if not user_ids:
            return {}
        statement = (
            select(point_balances.c.user_id, point_balances.c.balance)
            .where(point_balances.c.user_id.in_(sorted(set(user_ids))))
            .order_by(point_balances.c.user_id)
            .with_for_update()
        )
        return {row.user_id: row.balance for row in await self._connection.execute(statement)}

    async def set_balances(self, balances: Mapping[int, int]) -> None:
        if not balances:
            return
        await self._connection.execute(
            update(point_balances)
            .where(point_balances.c.user_id == bindparam("b_user_id"))
            .values(balance=bindparam("b_balance"), updated_at=func.now()),
            [{"b_user_id": u, "b_balance": b} for u, b in sorted(balances.items())],
        )

    async def record_transactions(self, rows: Sequence[tuple[int, str, int, str]]) -> list[int]:
        """Record (user id, kind, signed amount, command id) rows in one statement; returns
        their transaction ids in the same order."""
        if not rows:
            return []
        statement = insert(point_transactions).returning(
            point_transactions.c.transaction_id, sort_by_parameter_order=True
        )
        result = await self._connection.execute(
            statement,
            [{"user_id": u, "kind": k, "amount": a, "command_id": c} for u, k, a, c in rows],
        )
        return [int(i) for i in result.scalars().all()]


_PRODUCT_COLUMNS = (products.c.product_id, products.c.name, products.c.price, products.c.stock)


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """The products that exist among `product_ids`, not locked."""
        if not product_ids:
            return {}
        statement = select(*_PRODUCT_COLUMNS).where(
            products.c.product_id.in_(sorted(set(product_ids)))
        )
        rows = (await self._connection.execute(statement)).all()
        return {r.product_id: Product(r.product_id, r.name, r.price, r.stock) for r in rows}

    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """The products that exist among `product_ids`, locked in id order (no deadlocks)."""
        if not product_ids:
            return {}
        statement = (
            select(*_PRODUCT_COLUMNS)
            .where(products.c.product_id.in_(sorted(set(product_ids))))
            .order_by(products.c.product_id)
            .with_for_update()
        )
        rows = (await self._connection.execute(statement)).all()
        return {r.product_id: Product(r.product_id, r.name, r.price, r.stock) for r in rows}

    async def add_all(self, created: Sequence[Product]) -> int:
        """Insert new products, skipping ids created meanwhile; returns how many were
        inserted."""
        statement = (
            pg_insert(products)
            .on_conflict_do_nothing(index_elements=[products.c.product_id])
            .returning(products.c.product_id)
        )
        result = await self._connection.execute(
            statement,
            [
                {"product_id": p.product_id, "name": p.name, "price": p.price, "stock": p.stock}
                for p in sorted(created, key=lambda p: p.product_id)
            ],
        )
        return len(result.scalars().all())

    async def update_all(self, changed: Sequence[Product]) -> None:
        """Write name, price and stock of existing (locked) products."""
        if not changed:
            return
        await self._connection.execute(
            update(products)
            .where(products.c.product_id == bindparam("b_product_id"))
            .values(
                name=bindparam("b_name"),
                price=bindparam("b_price"),
                stock=bindparam("b_stock"),
                updated_at=func.now(),
            ),
            [
                {
                    "b_product_id": p.product_id,
                    "b_name": p.name,
                    "b_price": p.price,
                    "b_stock": p.stock,
                }
                for p in sorted(changed, key=lambda p: p.product_id)
            ],
        )

    async def set_stocks(self, changed: Sequence[Product]) -> None:
        if not changed:
            return
        await self._connection.execute(
            update(products)
            .where(products.c.product_id == bindparam("b_product_id"))
            .values(stock=bindparam("b_stock"), updated_at=func.now()),
            [{"b_product_id": p.product_id, "b_stock": p.stock} for p in changed],
        )


class CartRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def lines_of_users_for_update(
        self, user_ids: Sequence[int]
    ) -> dict[int, list[tuple[int, int]]]:
        """(product id, units) of every cart line of these users, by user then product
        id, locked."""
        if not user_ids:
            return {}
        statement = (
            select(cart_items.c.user_id, cart_items.c.product_id, cart_items.c.quantity)
            .where(cart_items.c.user_id.in_(sorted(set(user_ids))))
            .order_by(cart_items.c.user_id, cart_items.c.product_id)
            .with_for_update()
        )
        lines: dict[int, list[tuple[int, int]]] = {}
        for row in await self._connection.execute(statement):
            lines.setdefault(row.user_id, []).append((row.product_id, row.quantity))
        return lines

    async def set_quantities(self, quantities: Mapping[tuple[int, int], int]) -> None:
        """Set (user id, product id) lines to their units; 0 deletes the line."""
        kept = sorted((line, q) for line, q in quantities.items() if q > 0)
        gone = sorted(line for line, q in quantities.items() if q == 0)
        if kept:
            statement = pg_insert(cart_items)
            statement = statement.on_conflict_do_update(
                index_elements=[cart_items.c.user_id, cart_items.c.product_id],
                set_={"quantity": statement.excluded.quantity, "updated_at": func.now()},
            )
            await self._connection.execute(
                statement,
                [{"user_id": u, "product_id": p, "quantity": q} for (u, p), q in kept],
            )
        if gone:
            await self._connection.execute(
                delete(cart_items).where(
                    cart_items.c.user_id == bindparam("b_user_id"),
                    cart_items.c.product_id == bindparam("b_product_id"),
                ),
                [{"b_user_id": u, "b_product_id": p} for u, p in gone],
            )


class OrderRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, placed: Sequence[tuple[int, str, PricedOrder, datetime]]) -> list[int]:
        """Record (user id, command id, order, placed at) orders and their lines in two
        statements; returns the order ids in the same order."""
        if not placed:
            return []
        statement = insert(orders).returning(orders.c.order_id, sort_by_parameter_order=True)
        result = await self._connection.execute(
            statement,
            [
                {"user_id": u, "command_id": c, "total": o.total, "placed_at": at}
                for u, c, o, at in placed
            ],
        )
        order_ids = [int(i) for i in result.scalars().all()]
        await self._connection.execute(
            insert(order_lines),
            [
                {
                    "order_id": order_id,
                    "product_id": line.product_id,
                    "user_id": user_id,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "placed_at": placed_at,
                }
                for order_id, (user_id, _, order, placed_at) in zip(order_ids, placed, strict=True)
                for line in order.lines
            ],
        )
        return order_ids
