"""The payment port, and the seed's retry rule in its one place: a payment is tried, and
tried again up to 3 more times while it is declined; if all four attempts are declined
the order is refused with `payment_failed` and changes nothing. A cancel's refund
follows the same rule (`with_retries`), and both are settled in rounds
(`settle_in_rounds`)."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from shopflow.domain.errors import Rejected

PAYMENT_RETRIES = 3


@dataclass(frozen=True)
class Payment:
    user_id: int
    amount: int
    reference: str  # the order's command_id


@dataclass(frozen=True)
class Refund:
    """A payment given back, whole: `payment_reference` names the payment (its order's
    PlaceOrder command_id), `reference` the cancel that gives it back."""

    user_id: int
    amount: int
    reference: str  # the cancel's command_id
    payment_reference: str


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

    async def refund_all(self, refunds: Sequence[Refund]) -> Sequence[PaymentDeclined | None]:
        """One attempt at each refund, answered as `pay_all` answers. A payment is
        refunded at most once: a gateway outside the transaction treats a repeated
        `reference` as the refund already made."""
        ...


class _Settlement(Protocol):
    """A payment or a refund: what `with_retries` needs of it."""

    @property
    def amount(self) -> int: ...
    @property
    def reference(self) -> str: ...


S = TypeVar("S", bound=_Settlement)
Attempt = Callable[[Sequence[S]], Awaitable[Sequence[PaymentDeclined | None]]]


async def with_retries(attempt: Attempt[S], settlements: Sequence[S]) -> dict[str, str]:
    """Make every payment (or refund), retrying the declined ones (all of a round's in
    one call) up to `PAYMENT_RETRIES` times; returns, by reference, why each one that
    never went through failed."""
    pending = list(settlements)
    last_decline: dict[str, str] = {}
    for _ in range(1 + PAYMENT_RETRIES):
        if not pending:
            break
        answers = await attempt(pending)
        declined = []
        for settlement, answer in zip(pending, answers, strict=True):
            if answer is not None:
                last_decline[settlement.reference] = str(answer) or "declined"
                declined.append(settlement)
        pending = declined
    return {
        s.reference: f"{type(s).__name__.lower()} of {s.amount} failed {1 + PAYMENT_RETRIES} "
        f"times: {last_decline[s.reference]}"
        for s in pending
    }


class _Command(Protocol):
    @property
    def command_id(self) -> str: ...


C = TypeVar("C", bound=_Command)
D = TypeVar("D")


async def settle_in_rounds(
    commands: Sequence[C],
    decide: Callable[[Mapping[str, str]], Sequence[D | Rejected]],
    settlement_of: Callable[[C, D], S],
    attempt: Attempt[S],
) -> list[D | Rejected]:
    """Decide a batch whose accepted commands each move money through the payment port
    (an order's payment, a cancel's refund), as the seed orders it: decide every
    command, make the settlements of the accepted ones not made yet (`with_retries`),
    and if some were declined decide again with those refused `payment_failed`, which
    may accept later commands that then need settling too.

    `decide(declined)` must be monotone in `declined` (command_id -> why): a command
    accepted for a set of declines is accepted, identically, for any larger set. Then a
    settlement once made stays wanted, and with a gateway that never declines there is
    one round."""
    declined: dict[str, str] = {}
    made: set[str] = set()
    while True:
        decisions = list(decide(declined))
        unmade = [
            settlement_of(cmd, d)
            for cmd, d in zip(commands, decisions, strict=True)
            if not isinstance(d, Rejected) and cmd.command_id not in made
        ]
        if not unmade:
            break
        failed = await with_retries(attempt, unmade)
        made.update(s.reference for s in unmade if s.reference not in failed)
        if not failed:
            break  # no new decline: deciding again would give the same decisions
        declined.update(failed)
    accepted = {
        cmd.command_id
        for cmd, d in zip(commands, decisions, strict=True)
        if not isinstance(d, Rejected)
    }
    if made - accepted:  # cannot happen while `decide` is monotone
        raise RuntimeError(f"settled but no longer accepted: {sorted(made - accepted)}")
    return decisions
