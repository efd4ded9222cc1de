"""The chaos suite's workload, model and outcome checks: fed the outcomes a correct
service would give, the model finds nothing and predicts the cancels' refunds and
restocks; fed a wrong outcome, a wrong row, an `out_of_stock` the stock does not bear
out, or an order moved twice, it says so. The workload's cancels and ships keep the
rules of tests/chaos/workload.py."""

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from shopflow.contracts.commands import CancelOrder, PlaceOrder, ShipOrder
from shopflow.contracts.events import OrderPlaced, RejectionReason, ResultEvent
from shopflow.contracts.topics import ROUTES_BY_TYPE
from shopflow.domain.order_lifecycle import OrderStatus
from tests.chaos.model import differences, expected_state
from tests.chaos.workload import RICH_BALANCE, Expected, Record, Workload, build


class _Service:
    """The outcomes a correct service gives, command after command: the one the workload
    expects; an order on scarce stock placed while the stock lasts; of one order's
    `FIRST_MOVE` commands, the first accepted."""

    def __init__(self, workload: Workload) -> None:
        self.shop = workload.shop
        self.stock = dict(workload.shop.stock)  # only falls: no restock is ordered again
        self.outcomes: dict[str, ResultEvent] = {}
        self.totals: dict[int, int] = {}  # by order id
        self.moved: set[tuple[str, int]] = set()

    def answer(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.command is not None and record.command_id not in self.outcomes:
                self.outcomes[record.command_id] = self._outcome(record)

    def _outcome(self, record: Record) -> ResultEvent:
        command = record.command
        expected = record.expected
        if expected is Expected.SCARCE:
            assert isinstance(command, PlaceOrder)
            assert command.items is not None
            short = [line for line in command.items if line.quantity > self.stock[line.product_id]]
            if short:
                return _event(record, RejectionReason.OUT_OF_STOCK, product_id=short[0].product_id)
        if expected is Expected.FIRST_MOVE:
            assert isinstance(command, CancelOrder | ShipOrder)
            group = (type(command).__name__, command.order_id)
            if group in self.moved:
                already = (
                    RejectionReason.ORDER_CANCELLED
                    if isinstance(command, CancelOrder)
                    else RejectionReason.ORDER_SHIPPED
                )
                return _event(record, already, order_id=command.order_id)
            self.moved.add(group)
        if isinstance(expected, RejectionReason):
            return _event(record, expected, **_named(record))
        if isinstance(command, PlaceOrder):
            lines = (
                [(line.product_id, line.quantity) for line in command.items]
                if command.items is not None
                else list(self.shop.cart[command.user_id].items())
            )
            for product, quantity in lines:
                self.stock[product] -= quantity
            order_id = len(self.totals) + 1
            self.totals[order_id] = sum(q * self.shop.price[p] for p, q in lines)
            return _event(record, None, order_id=order_id, total=self.totals[order_id])
        if isinstance(command, CancelOrder):
            return _event(record, None, refunded=self.totals[command.order_id])
        return _event(record, None)


def _named(record: Record) -> dict[str, Any]:
    """What a rejection names: the product (an order's first), or the order."""
    command = record.command
    if isinstance(command, PlaceOrder):
        return {"product_id": command.items[0].product_id if command.items else None}
    if isinstance(command, CancelOrder | ShipOrder):
        return {"order_id": command.order_id}
    return {"product_id": getattr(command, "product_id", None)}


def _event(record: Record, reason: RejectionReason | None, **fields: Any) -> ResultEvent:
    """The event of `record`'s outcome (only the fields the model reads)."""
    assert record.command is not None
    route = ROUTES_BY_TYPE[type(record.command)]
    envelope: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "command_id": record.command_id,
        "occurred_at": datetime.now(UTC),
        "user_id": getattr(record.command, "user_id", None),
    }
    if reason is not None:
        return route.rejected_type.model_construct(**envelope | {"reason": reason} | fields)
    return route.accepted_type.model_construct(**envelope, **fields)


def _answer(workload: Workload, *, sold_out: Iterable[int] = ()) -> dict[str, ResultEvent]:
    """`workload` answered as the driver sends it: the setup's phases, the phase made from
    their answers (`settle`), then the stream. The service takes the `sold_out` products
    for sold out (wrongly: the model's stock says otherwise)."""
    service = _Service(workload)
    service.stock.update(dict.fromkeys(sold_out, 0))
    for phase in workload.setup:
        service.answer(phase)
    service.answer(workload.settle(service.outcomes))
    service.answer(workload.stream)
    return service.outcomes


def _run(commands: int, seed: int) -> tuple[Workload, dict[str, ResultEvent]]:
    workload = build(commands, run="unit", seed=seed)
    return workload, _answer(workload)


def _moves(workload: Workload, expected: Expected | RejectionReason) -> list[Record]:
    """The stream's cancels and ships expected to come to `expected`."""
    return [
        r
        for r in workload.commands.values()
        if isinstance(r.command, CancelOrder | ShipOrder) and r.expected == expected
    ]


def _placed(outcomes: dict[str, ResultEvent]) -> dict[int, OrderPlaced]:
    return {o.order_id: o for o in outcomes.values() if isinstance(o, OrderPlaced)}


def _order_id(record: Record) -> int:
    assert isinstance(record.command, CancelOrder | ShipOrder)
    return record.command.order_id


def test_the_outcomes_of_a_correct_service_raise_nothing() -> None:
    workload, outcomes = _run(400, seed=3)

    model, problems = expected_state(workload, outcomes)

    assert problems == []
    assert differences(model, model) == []
    assert model.orders  # the stream places orders, and the model counts them
    statuses = Counter(model.statuses.values())
    assert statuses[OrderStatus.CANCELLED] > 0
    assert statuses[OrderStatus.SHIPPED] > 0
    assert statuses[OrderStatus.PLACED] > 0


def test_cancels_refund_the_total_and_restock_every_line() -> None:
    workload, outcomes = _run(2000, seed=8)
    shop = workload.shop
    placed = _placed(outcomes)

    model, problems = expected_state(workload, outcomes)

    assert problems == []
    cancelled = [i for i, status in model.statuses.items() if status == OrderStatus.CANCELLED]
    assert model.refunds == {i: placed[i].total for i in cancelled}
    assert model.refunded_payments == model.refunds
    for holder in shop.holders:
        theirs = [order for order in placed.values() if order.user_id == holder]
        paid = sum(order.total for order in theirs)
        refunded = sum(model.refunds.get(order.order_id, 0) for order in theirs)
        assert model.balances[holder] == RICH_BALANCE - paid + refunded
    # Every racing order that was placed is cancelled: the contested stock is whole again.
    assert {p: model.stock[p] for p in shop.contested} == {p: shop.stock[p] for p in shop.contested}


def test_the_stream_moves_orders_as_the_workload_promises() -> None:
    workload, outcomes = _run(2000, seed=9)
    shop = workload.shop
    placed = _placed(outcomes)
    moved_in_setup = {_order_id(r) for r in workload.setup[-1]}
    stream = [r for r in workload.stream if r.command is not None]

    kinds: dict[int, set[type]] = {}  # by order id: the types of the commands moving it
    for record in stream:
        command = record.command
        if isinstance(command, CancelOrder | ShipOrder):
            kinds.setdefault(command.order_id, set()).add(type(command))
        elif isinstance(command, PlaceOrder):
            assert command.user_id not in shop.holders  # holders only move orders
            ordered = {line.product_id for line in command.items or []}
            assert not ordered & set(shop.contested)
        else:
            assert getattr(command, "user_id", None) not in shop.holders

    # An order gets cancels or ships, never both, unless the setup moved it.
    assert all(len(k) == 1 for i, k in kinds.items() if i not in moved_in_setup)
    # Each variant is there: the same bytes twice, two cancels and two ships of one order,
    # a cancel of a shipped order and a ship of a cancelled one, another holder's order
    # cancelled and shipped, an order that does not exist.
    cancels = Counter(r.value for r in stream if isinstance(r.command, CancelOrder))
    assert max(cancels.values()) > 1
    assert {type(r.command) for r in _moves(workload, Expected.FIRST_MOVE)} == {
        CancelOrder,
        ShipOrder,
    }
    assert _moves(workload, RejectionReason.ORDER_SHIPPED)
    assert _moves(workload, RejectionReason.ORDER_CANCELLED)
    unknown = _moves(workload, RejectionReason.UNKNOWN_ORDER)
    assert {type(r.command) for r in unknown if _order_id(r) in placed} == {CancelOrder, ShipOrder}
    assert any(_order_id(r) not in placed for r in unknown)
    # The racing orders that were placed are cancelled in the stream.
    racing = [
        event
        for r in workload.setup_commands
        if r.expected is Expected.SCARCE
        and isinstance(event := outcomes[r.command_id], OrderPlaced)
    ]
    assert racing
    assert all(kinds[order.order_id] == {CancelOrder} for order in racing)


def test_an_outcome_the_workload_did_not_call_for_is_a_problem() -> None:
    workload, outcomes = _run(400, seed=4)
    accepted = next(r for r in workload.commands.values() if r.expected is Expected.ACCEPTED)
    outcomes[accepted.command_id] = _event(accepted, RejectionReason.UNKNOWN_USER)
    shipped = _moves(workload, RejectionReason.ORDER_SHIPPED)[0]
    outcomes[shipped.command_id] = _event(shipped, None, refunded=1)

    _, problems = expected_state(workload, outcomes)

    assert sorted(problems) == sorted(
        [
            f"{accepted.command_id}: expected accepted, got unknown_user",
            f"{shipped.command_id}: expected order_shipped, got accepted",
        ]
    )


def test_an_order_moved_twice_or_never_is_a_problem() -> None:
    workload, outcomes = _run(400, seed=5)
    pairs: dict[int, list[Record]] = {}
    for record in _moves(workload, Expected.FIRST_MOVE):
        pairs.setdefault(_order_id(record), []).append(record)
    (twice, both), (never, neither) = list(pairs.items())[:2]
    refunded = getattr(outcomes[both[0].command_id], "refunded", None)
    for record in both:  # the first and the second accepted
        outcomes[record.command_id] = _event(record, None, refunded=refunded)
    for record in neither:  # both refused, as if the other had moved the order
        already = _event(record, RejectionReason.ORDER_SHIPPED, order_id=never)
        if isinstance(record.command, CancelOrder):
            already = _event(record, RejectionReason.ORDER_CANCELLED, order_id=never)
        outcomes[record.command_id] = already

    _, problems = expected_state(workload, outcomes)

    assert len(problems) == 2, problems
    assert f"of order {twice}, already" in " ".join(problems)
    assert f"order {never}: none of its" in " ".join(problems)


def test_out_of_stock_with_the_stock_still_there_is_a_problem() -> None:
    workload = build(400, run="unit", seed=5)
    outcomes = _answer(workload, sold_out=workload.shop.scarce)
    scarce = [r for r in workload.commands.values() if r.expected is Expected.SCARCE]

    _, problems = expected_state(workload, outcomes)

    # A scarce order asks 1-3 units, and the shop starts with at least 3 of each.
    assert len(scarce) > 10
    assert len(problems) == len(scarce)
    assert all("are left" in problem for problem in problems)


def test_a_setup_race_refused_with_stock_left_is_a_problem() -> None:
    workload = build(400, run="unit", seed=7)
    outcomes = _answer(workload, sold_out=workload.shop.contested)
    racing = [r for r in workload.setup_commands if r.expected is Expected.SCARCE]

    _, problems = expected_state(workload, outcomes)

    # Checked against the stock at the end of the setup's orders, not after the stream.
    assert len(problems) == len(racing) == len(workload.shop.holders)
    assert all("are left" in problem for problem in problems)


def test_a_row_off_by_one_is_a_difference() -> None:
    workload, outcomes = _run(400, seed=6)
    model, _ = expected_state(workload, outcomes)
    database, _ = expected_state(workload, outcomes)
    user = workload.shop.rich[0]
    database.balances[user] += 1
    cancelled = next(i for i, s in model.statuses.items() if s == OrderStatus.CANCELLED)
    database.statuses[cancelled] = OrderStatus.PLACED
    del database.refunded_payments[cancelled]

    assert differences(model, database) == [
        f"balances[{user}]: database {model.balances[user] + 1}, model {model.balances[user]}",
        f"statuses[{cancelled}]: database placed, model cancelled",
        f"refunded_payments[{cancelled}]: database None, model {model.refunds[cancelled]}",
    ]
