"""The default payment gateway: pays in points, recorded in the order's own transaction,
so a rolled-back order leaves no payment behind."""

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import payments


class PgPaymentGateway:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def pay(self, user_id: int, amount: int, reference: str) -> None:
        await self._connection.execute(
            insert(payments).values(user_id=user_id, amount=amount, command_id=reference)
        )
