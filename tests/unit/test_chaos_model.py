"""The chaos suite's model and outcome checks can fail: fed the outcomes a correct
service would give, they find nothing; fed a wrong outcome, a wrong row or an
`out_of_stock` the stock does not bear out, they say so."""

import uuid
from datetime import UTC, datetime
from typing import Any

from shopflow.contracts.commands import PlaceOrder
from shopflow.contracts.events import RejectionReason, ResultEvent
from shopflow.contracts.topics import ROUTES_BY_TYPE
from tests.chaos.model import differences, expected_state
from tests.chaos.workload import Expected, Record, Workload, build


def _answer(record: Record, reason: RejectionReason | None, workload: Workload) -> ResultEvent:
    """The event a correct service would publish (only the fields the model reads)."""
    assert record.command is not None
    route = ROUTES_BY_TYPE[type(record.command)]
    envelope: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "command_id": record.command_id,
        "occurred_at": datetime.now(UTC),
    }
    if reason is not None:
        product_id = getattr(record.command, "product_id", None)
        if isinstance(record.command, PlaceOrder) and record.command.items:
            product_id = record.command.items[0].product_id
        rejection: dict[str, Any] = {**envelope, "reason": reason, "product_id": product_id}
        return route.rejected_type.model_construct(**rejection)
    fields: dict[str, Any] = {}
    if isinstance(record.command, PlaceOrder):
        shop = workload.shop
        lines = (
            [(line.product_id, line.quantity) for line in record.command.items]
            if record.command.items is not None
            else list(shop.cart[record.command.user_id].items())
        )
        fields["total"] = sum(q * shop.price[p] for p, q in lines)
    return route.accepted_type.model_construct(**envelope | fields)


def _correct_outcomes(workload: Workload) -> dict[str, ResultEvent]:
    outcomes = {}
    for command_id, record in workload.commands.items():
        expected = record.expected
        reason = None if isinstance(expected, Expected) else expected
        outcomes[command_id] = _answer(record, reason, workload)
    return outcomes


def test_the_outcomes_of_a_correct_service_raise_nothing() -> None:
    workload = build(400, run="unit", seed=3)

    model, problems = expected_state(workload, _correct_outcomes(workload))

    assert problems == []
    assert differences(model, model) == []
    assert model.orders  # the stream places orders, and the model counts them


def test_an_outcome_the_workload_did_not_call_for_is_a_problem() -> None:
    workload = build(400, run="unit", seed=4)
    outcomes = _correct_outcomes(workload)
    accepted = next(r for r in workload.commands.values() if r.expected is Expected.ACCEPTED)
    outcomes[accepted.command_id] = _answer(accepted, RejectionReason.UNKNOWN_USER, workload)

    _, problems = expected_state(workload, outcomes)

    assert problems == [f"{accepted.command_id}: expected accepted, got unknown_user"]


def test_out_of_stock_with_the_stock_still_there_is_a_problem() -> None:
    workload = build(400, run="unit", seed=5)
    outcomes = _correct_outcomes(workload)
    scarce = [r for r in workload.commands.values() if r.expected is Expected.SCARCE]
    for record in scarce:  # every scarce order refused: nothing is taken from the stock
        outcomes[record.command_id] = _answer(record, RejectionReason.OUT_OF_STOCK, workload)

    _, problems = expected_state(workload, outcomes)

    # A scarce order asks 1-3 units, and the shop starts with at least 3 of each.
    assert len(scarce) > 10
    assert len(problems) == len(scarce)
    assert all("are left" in problem for problem in problems)


def test_a_row_off_by_one_is_a_difference() -> None:
    workload = build(400, run="unit", seed=6)
    model, _ = expected_state(workload, _correct_outcomes(workload))
    database, _ = expected_state(workload, _correct_outcomes(workload))
    user = workload.shop.rich[0]
    database.balances[user] += 1

    assert differences(model, database) == [
        f"balances[{user}]: database {model.balances[user] + 1}, model {model.balances[user]}"
    ]
