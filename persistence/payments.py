"""The default payment gateway: pays in points, recorded in the order's own transaction,
so a rolled-back order leaves no payment behind; a cancel's refund likewise. It never
declines."""

from collections.abc import Sequence

from sqlalchemy import BigInteger, String, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.domain.payment import Payment, PaymentDeclined, Refund
from shopflow.persistence.arrays import bound, rows_of
from shopflow.persistence.tables import payments, refunds

_paid = rows_of("pay", user_id=BigInteger(), amount=BigInteger(), command_id=String())
_RECORD_PAYMENTS = insert(payments).from_select(["user_id", "amount", "command_id"], select(_paid))
_refunded = rows_of(
    "ref", user_id=BigInteger(), amount=BigInteger(), command_id=String(), paid_by=String()
)
_RECORD_REFUNDS = insert(refunds).from_select(
    ["user_id", "amount", "command_id", "payment_command_id"], select(_refunded)
)


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

    async def refund_all(self, given_back: Sequence[Refund]) -> list[PaymentDeclined | None]:
        await self._connection.execute(
            _RECORD_REFUNDS,
            bound(
                "ref",
                user_id=[r.user_id for r in given_back],
                amount=[r.amount for r in given_back],
                command_id=[r.reference for r in given_back],
                paid_by=[r.payment_reference for r in given_back],
            ),
        )
        return [None] * len(given_back)
