"""Point balances: whole points, never negative, never above the contract's ceiling."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.limits import MAX_BALANCE
from shopflow.domain.errors import BalanceLimitExceeded, InsufficientPoints, Rejected, UnknownUser


class TransactionKind(StrEnum):
    """Why a balance moved: the seed's `point_transactions.kind`."""

    CHARGE = "charge"  # points bought (ChargePoints): a positive amount
    USE = "use"  # points paid for an order (PlaceOrder): a negative amount
    REFUND = "refund"  # an order's total given back (CancelOrder): a positive amount


@dataclass(frozen=True)
class PointTransaction:
    """One move of a balance, signed, with the balance after it, the command that made
    it and, for a `use` or a `refund`, its order."""

    user_id: int
    kind: TransactionKind
    amount: int
    balance_after: int
    command_id: str
    order_id: int | None = None


def credit(balance: int, amount: int) -> int:
    """The balance after adding `amount` (a charge or a refund); refuses to pass the
    ceiling of 10^15 points."""
    if amount <= 0:
        raise ValueError("a credit is a positive amount")
    new_balance = balance + amount
    if new_balance > MAX_BALANCE:
        raise BalanceLimitExceeded(f"balance {balance} + {amount} exceeds {MAX_BALANCE}")
    return new_balance


def spend(balance: int, amount: int) -> int:
    """The balance after paying `amount`; refuses to go below zero."""
    if amount < 0:
        raise ValueError("a payment is not negative")
    if amount > balance:
        raise InsufficientPoints(f"balance {balance} does not cover {amount}")
    return balance - amount


def decide_charges(
    balances: Mapping[int, int], commands: Sequence[ChargePoints]
) -> list[int | Rejected]:
    """Each charge's new balance, or why it is refused, deciding in offset order: a user's
    second charge sees the first. `balances` holds the registered users' balances (a
    user without one is unknown); it is not changed."""
    current = dict(balances)
    decisions: list[int | Rejected] = []
    for cmd in commands:
        try:
            if cmd.user_id not in current:
                raise UnknownUser(f"user {cmd.user_id} is not registered")
            current[cmd.user_id] = credit(current[cmd.user_id], cmd.amount)
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        decisions.append(current[cmd.user_id])
    return decisions
