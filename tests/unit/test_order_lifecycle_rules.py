"""The order's life as the domain decides it: placed, then cancelled or shipped, never
both and never back; a cancel's refund and restock; no servers."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from shopflow.contracts.commands import CancelOrder, ShipOrder
from shopflow.contracts.events import RejectionReason
from shopflow.contracts.limits import MAX_BALANCE
from shopflow.domain.catalog import Product
from shopflow.domain.errors import Rejected
from shopflow.domain.order_lifecycle import (
    Cancellation,
    OrderStatus,
    StoredOrder,
    decide_and_refund_cancellations,
    decide_cancellations,
    decide_shipments,
    transition,
)
from shopflow.domain.orders import PricedLine
from shopflow.domain.payment import PAYMENT_RETRIES, Payment, PaymentDeclined, Refund

PLACED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
MUG = Product(7, "Mug", 10, 3)
TEA = Product(8, "Tea", 5, 0)


def order(
    order_id: int = 1, user_id: int = 1, status: OrderStatus = OrderStatus.PLACED
) -> StoredOrder:
    lines = (PricedLine(7, 2, 10, "Mug"), PricedLine(8, 1, 5, "Tea"))
    return StoredOrder(order_id, user_id, status, 25, PLACED_AT, f"place-{order_id}", lines)


def cancel(command_id: str, order_id: int = 1, user_id: int = 1) -> CancelOrder:
    return CancelOrder(command_id=command_id, user_id=user_id, order_id=order_id)


def reasons(decisions: Sequence[object]) -> list[str]:
    return [d.reason.value if isinstance(d, Rejected) else "ok" for d in decisions]


@pytest.mark.parametrize("to", [OrderStatus.CANCELLED, OrderStatus.SHIPPED])
def test_only_a_placed_order_moves_and_only_forward(to: OrderStatus) -> None:
    assert transition(order(), to).status is to
    for stopped, reason in (
        (OrderStatus.CANCELLED, RejectionReason.ORDER_CANCELLED),
        (OrderStatus.SHIPPED, RejectionReason.ORDER_SHIPPED),
    ):
        with pytest.raises(Rejected) as refused:
            transition(order(status=stopped), to)
        assert refused.value.reason is reason
    with pytest.raises(ValueError, match="placed once"):
        transition(order(), OrderStatus.PLACED)


def test_a_cancel_puts_every_line_back_and_refunds_the_total() -> None:
    (decision,) = decide_cancellations({1: 100}, {1: order()}, {7: MUG, 8: TEA}, [cancel("c")], {})

    assert isinstance(decision, Cancellation)
    assert decision.order.status is OrderStatus.CANCELLED
    assert decision.balance == 125
    assert decision.products == (Product(7, "Mug", 10, 5), Product(8, "Tea", 5, 1))


def test_a_second_cancel_of_the_order_in_the_batch_sees_the_first() -> None:
    decisions = decide_cancellations(
        {1: 100}, {1: order()}, {7: MUG, 8: TEA}, [cancel("a"), cancel("b")], {}
    )

    assert reasons(decisions) == ["ok", "order_cancelled"]


def test_another_users_order_is_as_unknown_as_a_missing_one() -> None:
    decisions = decide_cancellations(
        {2: 0},
        {1: order(user_id=1)},
        {7: MUG, 8: TEA},
        [cancel("theirs", order_id=1, user_id=2), cancel("none", order_id=9, user_id=2)],
        {},
    )

    assert reasons(decisions) == ["unknown_order", "unknown_order"]


def test_a_shipped_order_cannot_be_cancelled_nor_a_cancelled_one_shipped() -> None:
    orders = {1: order(1, status=OrderStatus.SHIPPED), 2: order(2, status=OrderStatus.CANCELLED)}

    cancels = decide_cancellations({1: 0}, orders, {7: MUG, 8: TEA}, [cancel("c", 1)], {})
    ships = decide_shipments(orders, [ShipOrder(command_id="s", user_id=1, order_id=2)])

    assert reasons(cancels) == ["order_shipped"]
    assert reasons(ships) == ["order_cancelled"]


def test_a_refund_that_would_pass_the_balance_ceiling_is_refused_and_changes_nothing() -> None:
    decisions = decide_cancellations(
        {1: MAX_BALANCE - 24}, {1: order()}, {7: MUG, 8: TEA}, [cancel("c"), cancel("d")], {}
    )

    # Refused, the order stays placed: the same cancel later is decided afresh.
    assert reasons(decisions) == ["balance_limit_exceeded", "balance_limit_exceeded"]


def test_a_ship_then_a_ship_of_the_same_order_in_one_batch() -> None:
    ships = [ShipOrder(command_id=c, user_id=1, order_id=1) for c in ("s1", "s2")]

    decisions = decide_shipments({1: order()}, ships)

    assert reasons(decisions) == ["ok", "order_shipped"]


class _Gateway:
    """Declines a refund reference as often as `declines` says; records the rest."""

    pays_in_transaction = True

    def __init__(self, declines: dict[str, int]) -> None:
        self.declines = declines
        self.refunded: list[Refund] = []

    async def pay_all(self, payments: Sequence[Payment]) -> list[PaymentDeclined | None]:
        raise AssertionError("a cancel pays nothing")

    async def refund_all(self, refunds: Sequence[Refund]) -> list[PaymentDeclined | None]:
        answers: list[PaymentDeclined | None] = []
        for refund in refunds:
            if self.declines.get(refund.reference, 0) > 0:
                self.declines[refund.reference] -= 1
                answers.append(PaymentDeclined("no"))
            else:
                self.refunded.append(refund)
                answers.append(None)
        return answers


def test_a_refund_declined_every_time_refuses_the_cancel_and_a_later_one_takes_its_place() -> None:
    gateway = _Gateway({"declined": 1 + PAYMENT_RETRIES, "retried": PAYMENT_RETRIES})
    commands = [cancel("declined"), cancel("again"), cancel("retried", order_id=2)]

    decisions = asyncio.run(
        decide_and_refund_cancellations(
            {1: 0}, {1: order(1), 2: order(2)}, {7: MUG, 8: TEA}, commands, gateway
        )
    )

    assert reasons(decisions) == ["payment_failed", "ok", "ok"]
    assert isinstance(decisions[0], Rejected)
    assert "refund of 25 failed 4 times" in str(decisions[0])
    # Each refund names the payment it gives back; "again" is refunded in the second round.
    assert [(r.reference, r.payment_reference) for r in gateway.refunded] == [
        ("retried", "place-2"),
        ("again", "place-1"),
    ]
    assert [d.balance for d in decisions if isinstance(d, Cancellation)] == [25, 50]
