"""The payment port. The seed retries a failed payment up to 3 times; if the first try and
its 3 retries all fail the order is refused with `payment_failed` and nothing changes."""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from domain.errors import PaymentFailed

PAYMENT_RETRIES = 3


class PaymentDeclined(Exception):
    """One payment attempt failed; it may succeed if tried again."""


class PaymentGateway(Protocol):
    async def pay(self, user_id: int, amount: int, reference: str) -> None:
        """Take `amount` points from the user for the order named `reference`, or raise
        PaymentDeclined. Must be idempotent per `reference` if it leaves the transaction."""
        ...


@runtime_checkable
class LedgerPaymentGateway(PaymentGateway, Protocol):
    """A gateway that records payments in the order's own transaction and never declines
    (the default one, paying in points). It can take a whole batch's payments at once."""

    async def pay_many(self, payments: Sequence[tuple[int, int, str]]) -> None:
        """Record (user id, amount, reference) payments, all or none."""
        ...


async def pay_with_retries(
    gateway: PaymentGateway, user_id: int, amount: int, reference: str
) -> None:
    failures: list[str] = []
    for _ in range(1 + PAYMENT_RETRIES):
        try:
            await gateway.pay(user_id, amount, reference)
        except PaymentDeclined as declined:
            failures.append(str(declined) or "declined")
            continue
        return
    raise PaymentFailed(f"payment of {amount} failed {len(failures)} times: {failures[-1]}")
