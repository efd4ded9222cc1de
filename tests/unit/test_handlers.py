"""The handlers of users, products and points against in-memory ports, each run through
its binding (its rows locked, then the handler): what a batch changes and what each
command of it is answered."""

from typing import TypeVar

import pytest

from shopflow.consumers.handlers import LostInsertRace
from shopflow.contracts.commands import ChargePoints, RegisterUser, UpsertProduct
from shopflow.contracts.events import PointsCharged, ProductUpserted, UserRegistered
from shopflow.contracts.limits import MAX_BALANCE
from shopflow.domain.catalog import Product
from shopflow.domain.errors import UnknownUser, UserExists
from tests.support.fakes import FakeUnitOfWork
from tests.support.handling import handled, names

C = TypeVar("C", RegisterUser, UpsertProduct, ChargePoints)


async def test_registration_opens_a_zero_balance_and_a_taken_id_is_user_exists() -> None:
    uow = FakeUnitOfWork()
    uow.state.users[7] = "Old"
    uow.state.balances[7] = 3

    answers = await handled(
        uow,
        RegisterUser(command_id="a", user_id=1, name="A"),
        RegisterUser(command_id="b", user_id=7, name="B"),  # taken before
        RegisterUser(command_id="c", user_id=1, name="C"),  # taken by "a"
    )

    assert names(answers) == ["UserRegistered", "UserExists", "UserExists"]
    assert isinstance(answers[0], UserRegistered)
    assert answers[0].name == "A"
    assert uow.state.users == {7: "Old", 1: "A"}
    assert uow.state.balances == {7: 3, 1: 0}


async def test_a_registration_that_loses_an_insert_race_is_retried_not_answered() -> None:
    uow = FakeUnitOfWork()

    class Racing:  # another transaction inserts the user between the read and the insert
        async def existing(self, user_ids: list[int]) -> set[int]:
            return set()

        async def add_all(self, users: list[tuple[int, str]]) -> int:
            return 0

    uow.users = Racing()  # type: ignore[assignment]

    with pytest.raises(LostInsertRace):
        await handled(uow, RegisterUser(command_id="a", user_id=1, name="A"))


async def test_upserts_create_then_restock_and_write_the_last_state_once() -> None:
    uow = FakeUnitOfWork()
    uow.state.products[4] = Product(4, "Tea", 5, 1)

    answers = await handled(
        uow,
        UpsertProduct(command_id="a", product_id=3, name="Mug", price=9, stock_added=2),
        UpsertProduct(command_id="b", product_id=3, name="Mug2", price=8, stock_added=5),
        UpsertProduct(command_id="c", product_id=4, name="Tea", price=6, stock_added=0),
    )

    assert all(isinstance(a, ProductUpserted) for a in answers)
    assert [(a.name, a.price, a.stock) for a in answers if isinstance(a, ProductUpserted)] == [
        ("Mug", 9, 2),
        ("Mug2", 8, 7),
        ("Tea", 6, 1),
    ]
    assert uow.state.products == {3: Product(3, "Mug2", 8, 7), 4: Product(4, "Tea", 6, 1)}


async def test_charges_apply_in_order_and_answer_each_command() -> None:
    uow = FakeUnitOfWork()
    uow.state.balances.update({1: 0, 2: MAX_BALANCE - 10})

    answers = await handled(
        uow,
        ChargePoints(command_id="a", user_id=1, amount=5),
        ChargePoints(command_id="b", user_id=9, amount=5),  # unknown user
        ChargePoints(command_id="c", user_id=1, amount=7),
        ChargePoints(command_id="d", user_id=2, amount=11),  # past the ceiling
        ChargePoints(command_id="e", user_id=2, amount=10),
    )

    assert names(answers) == [
        "PointsCharged",
        "UnknownUser",
        "PointsCharged",
        "BalanceLimitExceeded",
        "PointsCharged",
    ]
    charged = [a for a in answers if isinstance(a, PointsCharged)]
    assert [(a.command_id, a.balance, a.transaction_id) for a in charged] == [
        ("a", 5, 1),
        ("c", 12, 2),
        ("e", MAX_BALANCE, 3),
    ]
    assert uow.state.balances == {1: 12, 2: MAX_BALANCE}
    assert uow.state.transactions == [
        (1, "charge", 5, "a"),
        (1, "charge", 7, "c"),
        (2, "charge", 10, "e"),
    ]


async def test_a_batch_of_refused_charges_writes_nothing() -> None:
    uow = FakeUnitOfWork()

    answers = await handled(uow, ChargePoints(command_id="a", user_id=1, amount=5))

    assert isinstance(answers[0], UnknownUser)
    assert uow.state.transactions == []
    assert uow.state.balances == {}


def test_user_exists_is_a_rejection() -> None:
    assert UserExists().reason.value == "user_exists"
