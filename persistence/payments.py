"""The default payment gateway: pays in points, recorded in the order's own transaction,
so a rolled-back order leaves no payment behind."""

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import payments


class PgPaymentGateway:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def pay(self, user_id: int, amount: int, reference: str) -> None:
        await self.pay_many([(user_id, amount, reference)])

    async def pay_many(self, paid: Sequence[tuple[int, int, str]]) -> None:
        await self._connection.execute(
            insert(payments),
            [{"user_id": u, "amount": a, "command_id": r} for u, a, r in paid],
        )
