"""Point balances: whole points, never negative, never above the contract's ceiling."""

from contracts.limits import MAX_BALANCE
from domain.errors import BalanceLimitExceeded, InsufficientPoints


def charge(balance: int, amount: int) -> int:
    """The balance after charging `amount`; refuses to pass the ceiling of 10^15 points."""
    if amount <= 0:
        raise ValueError("a charge is a positive amount")
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
