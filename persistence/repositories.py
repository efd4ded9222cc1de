"""Repositories over one connection (the batch's transaction).

Reads that precede a write lock their row (`FOR UPDATE`), so two commands on the same
user or product settle in turn instead of overwriting each other.
"""

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.catalog import Product
from persistence.tables import point_balances, point_transactions, products, users


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

    async def exists(self, user_id: int) -> bool:
        statement = select(users.c.user_id).where(users.c.user_id == user_id)
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

    async def balance(self, user_id: int) -> int | None:
        statement = select(point_balances.c.balance).where(point_balances.c.user_id == user_id)
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
