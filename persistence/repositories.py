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

    async def add(self, user_id: int, name: str) -> bool:
        """Insert the user; False if the id is taken (the database settles races)."""
        statement = (
            pg_insert(users)
            .values(user_id=user_id, name=name)
            .on_conflict_do_nothing(index_elements=[users.c.user_id])
            .returning(users.c.user_id)
        )
        return (await self._connection.execute(statement)).first() is not None


class PointsRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def open_account(self, user_id: int) -> None:
        await self._connection.execute(insert(point_balances).values(user_id=user_id, balance=0))

    async def balance_for_update(self, user_id: int) -> int | None:
        """The user's balance, row locked until the transaction ends; None for no such user."""
        statement = (
            select(point_balances.c.balance)
            .where(point_balances.c.user_id == user_id)
            .with_for_update()
        )
        return (await self._connection.execute(statement)).scalar_one_or_none()

    async def set_balance(self, user_id: int, balance: int) -> None:
        await self._connection.execute(
            update(point_balances)
            .where(point_balances.c.user_id == user_id)
            .values(balance=balance, updated_at=func.now())
        )

    async def record_transaction(
        self, user_id: int, kind: str, amount: int, command_id: str
    ) -> int:
        """Record a signed change of the balance; returns its transaction id."""
        statement = (
            insert(point_transactions)
            .values(user_id=user_id, kind=kind, amount=amount, command_id=command_id)
            .returning(point_transactions.c.transaction_id)
        )
        return int((await self._connection.execute(statement)).scalar_one())

    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Balances of those users that exist, rows locked in user id order."""
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


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get_for_update(self, product_id: int) -> Product | None:
        statement = (
            select(products.c.product_id, products.c.name, products.c.price, products.c.stock)
            .where(products.c.product_id == product_id)
            .with_for_update()
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else Product(row.product_id, row.name, row.price, row.stock)

    async def get(self, product_id: int) -> Product | None:
        statement = select(
            products.c.product_id, products.c.name, products.c.price, products.c.stock
        ).where(products.c.product_id == product_id)
        row = (await self._connection.execute(statement)).first()
        return None if row is None else Product(row.product_id, row.name, row.price, row.stock)

    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """The products that exist among `product_ids`, locked in id order (no deadlocks)."""
        statement = (
            select(products.c.product_id, products.c.name, products.c.price, products.c.stock)
            .where(products.c.product_id.in_(sorted(set(product_ids))))
            .order_by(products.c.product_id)
            .with_for_update()
        )
        rows = (await self._connection.execute(statement)).all()
        return {r.product_id: Product(r.product_id, r.name, r.price, r.stock) for r in rows}

    async def set_stocks(self, changed: Sequence[Product]) -> None:
        await self._connection.execute(
            update(products)
            .where(products.c.product_id == bindparam("b_product_id"))
            .values(stock=bindparam("b_stock"), updated_at=func.now()),
            [{"b_product_id": p.product_id, "b_stock": p.stock} for p in changed],
        )

    async def save(self, product: Product) -> None:
        statement = pg_insert(products).values(
            product_id=product.product_id,
            name=product.name,
            price=product.price,
            stock=product.stock,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[products.c.product_id],
            set_={
                "name": statement.excluded.name,
                "price": statement.excluded.price,
                "stock": statement.excluded.stock,
                "updated_at": func.now(),
            },
        )
        await self._connection.execute(statement)


class CartRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def quantity_for_update(self, user_id: int, product_id: int) -> int:
        """Units of the product in the user's cart (0 when there is no line), locked."""
        statement = (
            select(cart_items.c.quantity)
            .where(cart_items.c.user_id == user_id, cart_items.c.product_id == product_id)
            .with_for_update()
        )
        return (await self._connection.execute(statement)).scalar_one_or_none() or 0

    async def set_quantity(self, user_id: int, product_id: int, quantity: int) -> None:
        """Set the line's units; 0 deletes the line."""
        if quantity == 0:
            await self._connection.execute(
                delete(cart_items).where(
                    cart_items.c.user_id == user_id, cart_items.c.product_id == product_id
                )
            )
            return
        statement = pg_insert(cart_items).values(
            user_id=user_id, product_id=product_id, quantity=quantity
        )
        statement = statement.on_conflict_do_update(
            index_elements=[cart_items.c.user_id, cart_items.c.product_id],
            set_={"quantity": statement.excluded.quantity, "updated_at": func.now()},
        )
        await self._connection.execute(statement)

    async def lines_for_update(self, user_id: int) -> list[tuple[int, int]]:
        """(product id, units) of every line of the user's cart, by product id, locked."""
        statement = (
            select(cart_items.c.product_id, cart_items.c.quantity)
            .where(cart_items.c.user_id == user_id)
            .order_by(cart_items.c.product_id)
            .with_for_update()
        )
        return [(r.product_id, r.quantity) for r in (await self._connection.execute(statement))]

    async def lines_of_users_for_update(
        self, user_ids: Sequence[int]
    ) -> dict[int, list[tuple[int, int]]]:
        """Every cart line of these users, by user then product id, locked."""
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

    async def remove_lines(self, user_id: int, product_ids: Sequence[int]) -> None:
        await self._connection.execute(
            delete(cart_items).where(
                cart_items.c.user_id == user_id, cart_items.c.product_id.in_(list(product_ids))
            )
        )


class OrderRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(
        self, user_id: int, command_id: str, order: PricedOrder, placed_at: datetime
    ) -> int:
        """Record the order and its lines; returns the new order id."""
        statement = (
            insert(orders)
            .values(user_id=user_id, command_id=command_id, total=order.total, placed_at=placed_at)
            .returning(orders.c.order_id)
        )
        order_id = int((await self._connection.execute(statement)).scalar_one())
        await self._add_lines([(order_id, user_id, order, placed_at)])
        return order_id

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
        await self._add_lines(
            [(i, u, o, at) for i, (u, _, o, at) in zip(order_ids, placed, strict=True)]
        )
        return order_ids

    async def _add_lines(self, placed: Sequence[tuple[int, int, PricedOrder, datetime]]) -> None:
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
                for order_id, user_id, order, placed_at in placed
                for line in order.lines
            ],
        )
