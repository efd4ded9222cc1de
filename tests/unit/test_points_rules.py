import pytest

from shopflow.contracts.limits import MAX_BALANCE
from shopflow.domain import points
from shopflow.domain.errors import BalanceLimitExceeded, InsufficientPoints


def test_charge_adds_the_amount() -> None:
    assert points.credit(100, 50) == 150


def test_charge_up_to_the_ceiling_is_allowed() -> None:
    assert points.credit(MAX_BALANCE - 1, 1) == MAX_BALANCE


def test_charge_past_the_ceiling_is_refused() -> None:
    with pytest.raises(BalanceLimitExceeded) as refused:
        points.credit(MAX_BALANCE, 1)
    assert refused.value.reason.value == "balance_limit_exceeded"


def test_charge_of_nothing_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        points.credit(0, 0)


def test_spend_takes_the_amount_and_may_reach_zero() -> None:
    assert points.spend(100, 100) == 0


def test_spending_more_than_the_balance_is_refused() -> None:
    with pytest.raises(InsufficientPoints):
        points.spend(99, 100)
