"""The default payment gateway: pays in points, recorded in the order's own transaction,
so a rolled-back order leaves no payment behind. It never declines."""

from collections.abc import Sequence

from sqlalchemy import BigInteger, String, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.domain.payment import Payment, PaymentDeclined
from shopflow.persistence.arrays import bound, rows_of
from shopflow.persistence.tables import payments

_paid = rows_of("pay", user_id=BigInteger(), amount=BigInteger(), command_id=String())
_RECORD_PAYMENTS = insert(payments).from_select(["user_id", "amount", "command_id"], select(_paid))


class PointsPaymentGateway:
    pays_in_transaction = True

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def pay_all(self, paid: Sequence[Payment]) -> list[PaymentDeclined | None]:
        await self._connection.execute(
            _RECORD_PAYMENTS,
            bound(
                "pay",
                user_id=[p.user_id for p in paid],
                amount=[p.amount for p in paid],
                command_id=[p.reference for p in paid],
            ),
        )
        return [None] * len(paid)
