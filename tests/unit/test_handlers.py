"""The use cases against in-memory ports: what each command changes and answers."""

import uuid
from datetime import UTC, datetime

import pytest

from consumers.handlers import (
    EventMeta,
    charge_points,
    charge_points_set,
    register_user,
    upsert_product,
)
from contracts.commands import ChargePoints, RegisterUser, UpsertProduct
from contracts.events import PointsCharged
from contracts.limits import MAX_BALANCE
from domain.errors import UnknownUser, UserExists
from tests.unit.fakes import FakeUnitOfWork


def _meta(command_id: str = "c") -> EventMeta:
    return EventMeta(uuid.uuid4(), command_id, datetime(2026, 11, 29, tzinfo=UTC))


async def test_register_opens_a_zero_balance() -> None:
    uow = FakeUnitOfWork()

    event = await register_user(uow, RegisterUser(command_id="c", user_id=1, name="A"), _meta())

    assert (event.user_id, event.name) == (1, "A")
    assert uow.points.balances == {1: 0}


async def test_register_twice_is_user_exists() -> None:
    uow = FakeUnitOfWork()
    await register_user(uow, RegisterUser(command_id="a", user_id=1, name="A"), _meta())

    with pytest.raises(UserExists):
        await register_user(uow, RegisterUser(command_id="b", user_id=1, name="B"), _meta())


async def test_charge_raises_the_balance_and_records_a_charge_transaction() -> None:
    uow = FakeUnitOfWork()
    uow.points.balances[1] = 10
    meta = _meta("charge-1")

    event = await charge_points(uow, ChargePoints(command_id="charge-1", user_id=1, amount=5), meta)

    assert (event.balance, event.amount, event.transaction_id) == (15, 5, 1)
    assert event.event_id == meta.event_id
    assert uow.points.transactions == [(1, "charge", 5, "charge-1")]


async def test_charge_for_an_unknown_user_is_refused_and_writes_nothing() -> None:
    uow = FakeUnitOfWork()

    with pytest.raises(UnknownUser):
        await charge_points(uow, ChargePoints(command_id="c", user_id=1, amount=5), _meta())
    assert uow.points.transactions == []


async def test_upsert_creates_then_adds_stock() -> None:
    uow = FakeUnitOfWork()
    command = UpsertProduct(command_id="a", product_id=3, name="Mug", price=9, stock_added=2)

    first = await upsert_product(uow, command, _meta())
    second = await upsert_product(uow, command.model_copy(update={"stock_added": 5}), _meta())

    assert (first.stock, second.stock) == (2, 7)


async def test_set_based_charges_apply_in_order_and_answer_each_command() -> None:
    uow = FakeUnitOfWork()
    uow.points.balances[1] = 0
    uow.points.balances[2] = MAX_BALANCE - 10
    commands = [
        (ChargePoints(command_id="a", user_id=1, amount=5), _meta("a")),
        (ChargePoints(command_id="b", user_id=9, amount=5), _meta("b")),  # unknown user
        (ChargePoints(command_id="c", user_id=1, amount=7), _meta("c")),
        (ChargePoints(command_id="d", user_id=2, amount=11), _meta("d")),  # past the ceiling
        (ChargePoints(command_id="e", user_id=2, amount=10), _meta("e")),
    ]

    answers = await charge_points_set(uow, commands)

    assert [type(a).__name__ for a in answers] == [
        "PointsCharged",
        "UnknownUser",
        "PointsCharged",
        "BalanceLimitExceeded",
        "PointsCharged",
    ]
    charged = [a for a in answers if isinstance(a, PointsCharged)]
    assert [(a.command_id, a.balance) for a in charged] == [
        ("a", 5),
        ("c", 12),
        ("e", MAX_BALANCE),
    ]
    assert [a.transaction_id for a in charged] == [1, 2, 3]
    assert uow.points.balances == {1: 12, 2: MAX_BALANCE}
    assert [t[3] for t in uow.points.transactions] == ["a", "c", "e"]


async def test_set_based_charges_agree_with_the_one_by_one_handler() -> None:
    one_by_one, as_set = FakeUnitOfWork(), FakeUnitOfWork()
    for uow in (one_by_one, as_set):
        uow.points.balances.update({1: 0, 2: 100})
    commands = [
        (ChargePoints(command_id=f"c{i}", user_id=1 + i % 2, amount=10 + i), _meta(f"c{i}"))
        for i in range(10)
    ]

    singles = [await charge_points(one_by_one, cmd, meta) for cmd, meta in commands]
    batch = await charge_points_set(as_set, commands)

    assert [(e.balance, e.transaction_id) for e in singles] == [
        (e.balance, e.transaction_id) for e in batch if isinstance(e, PointsCharged)
    ]
    assert one_by_one.points.balances == as_set.points.balances
