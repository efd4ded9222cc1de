"""The default payment gateway: pays in points, recorded in the order's own transaction,
so a rolled-back order leaves no payment behind. It never declines."""

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payment import Payment, PaymentDeclined
from persistence.tables import payments


class PointsPaymentGateway:
    pays_in_transaction = True

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def pay_all(self, paid: Sequence[Payment]) -> list[PaymentDeclined | None]:
        await self._connection.execute(
            insert(payments),
            [{"user_id": p.user_id, "amount": p.amount, "command_id": p.reference} for p in paid],
        )
        return [None] * len(paid)
