"""The use cases against in-memory ports: what each command changes and answers."""

import uuid
from datetime import UTC, datetime

import pytest

from consumers.handlers import EventMeta, charge_points, register_user, upsert_product
from contracts.commands import ChargePoints, RegisterUser, UpsertProduct
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
