"""The payment port, and the seed's retry rule in its one place: a payment is tried, and
tried again up to 3 more times while it is declined; if all four attempts are declined
the order is refused with `payment_failed` and changes nothing."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

PAYMENT_RETRIES = 3


@dataclass(frozen=True)
class Payment:
    user_id: int
    amount: int
    reference: str  # the order's command_id


class PaymentDeclined(Exception):
    """One payment attempt failed; it may succeed if tried again."""


class PaymentGateway(Protocol):
    @property
    def pays_in_transaction(self) -> bool:
        """True when payments are rows of the order's own transaction, undone with it.

        False for a gateway outside the database (a card processor): what it took stays
        taken when the transaction rolls back and the batch is retried, so it must treat
        a repeated `reference` as the payment already made."""
        ...

    async def pay_all(self, payments: Sequence[Payment]) -> Sequence[PaymentDeclined | None]:
        """One attempt at each payment; per payment, in order, None when it went through
        or why it was declined. An error raised (not returned) fails the whole batch."""
        ...


async def pay_with_retries(gateway: PaymentGateway, payments: Sequence[Payment]) -> dict[str, str]:
    """Make every payment, retrying the declined ones (all of a round's in one call) up
    to `PAYMENT_RETRIES` times; returns, by reference, why each payment that never went
    through failed."""
    pending = list(payments)
    last_decline: dict[str, str] = {}
    for _ in range(1 + PAYMENT_RETRIES):
        if not pending:
            break
        answers = await gateway.pay_all(pending)
        declined = []
        for payment, answer in zip(pending, answers, strict=True):
            if answer is not None:
                last_decline[payment.reference] = str(answer) or "declined"
                declined.append(payment)
        pending = declined
    return {
        p.reference: f"payment of {p.amount} failed {1 + PAYMENT_RETRIES} times: "
        f"{last_decline[p.reference]}"
        for p in pending
    }
