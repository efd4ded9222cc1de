"""Reads for the HTTP side, straight from PostgreSQL (the source of truth)."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.tables import point_balances, products


@dataclass(frozen=True)
class ProductView:
    product_id: int
    name: str
    price: int
    stock: int


class ReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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
