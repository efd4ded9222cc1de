"""Cart and order use cases against in-memory ports (no I/O).

These check the rules and the order of the checks; the integration tests check that a
rejected order changes nothing in PostgreSQL (savepoint rollback) and concurrency.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from consumers.handlers import (
    EventMeta,
    add_cart_item,
    place_order,
    place_orders_set,
    remove_cart_item,
)
from contracts.commands import AddCartItem, OrderLine, PlaceOrder, RemoveCartItem
from contracts.events import OrderPlaced
from domain.catalog import Product
from domain.errors import (
    EmptyCart,
    InsufficientCartQuantity,
    InsufficientPoints,
    OutOfStock,
    PaymentFailed,
    Rejected,
    UnknownProduct,
    UnknownUser,
)
from tests.unit.fakes import FakeUnitOfWork


def _meta(command_id: str = "c") -> EventMeta:
    return EventMeta(uuid.uuid4(), command_id, datetime(2026, 11, 29, tzinfo=UTC))


def _shop(balance: int = 10_000) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    uow.users.names[1] = "Alice"
    uow.points.balances[1] = balance
    uow.products.rows[10] = Product(10, "Mug", 300, 5)
    uow.products.rows[20] = Product(20, "Tea", 100, 2)
    return uow


def _order(*lines: tuple[int, int], command_id: str = "o") -> PlaceOrder:
    return PlaceOrder(
        command_id=command_id,
        user_id=1,
        items=[OrderLine(product_id=p, quantity=q) for p, q in lines],
    )


async def test_adding_to_cart_accumulates_up_to_the_stock() -> None:
    uow = _shop()

    first = await add_cart_item(
        uow, AddCartItem(command_id="a", user_id=1, product_id=10, quantity=3), _meta()
    )
    second = await add_cart_item(
        uow, AddCartItem(command_id="b", user_id=1, product_id=10, quantity=2), _meta()
    )

    assert (first.cart_quantity, second.cart_quantity) == (3, 5)
    with pytest.raises(OutOfStock) as refused:
        await add_cart_item(
            uow, AddCartItem(command_id="c", user_id=1, product_id=10, quantity=1), _meta()
        )
    assert refused.value.product_id == 10


async def test_adding_for_unknown_user_or_product_is_refused() -> None:
    uow = _shop()

    with pytest.raises(UnknownUser):
        await add_cart_item(
            uow, AddCartItem(command_id="a", user_id=2, product_id=10, quantity=1), _meta()
        )
    with pytest.raises(UnknownProduct):
        await add_cart_item(
            uow, AddCartItem(command_id="a", user_id=1, product_id=99, quantity=1), _meta()
        )


async def test_removing_down_to_zero_deletes_the_line() -> None:
    uow = _shop()
    uow.carts.lines[(1, 10)] = 2

    event = await remove_cart_item(
        uow, RemoveCartItem(command_id="r", user_id=1, product_id=10, quantity=2), _meta()
    )

    assert event.cart_quantity == 0
    assert uow.carts.lines == {}


async def test_removing_more_than_the_cart_holds_is_refused() -> None:
    uow = _shop()
    uow.carts.lines[(1, 10)] = 1

    with pytest.raises(InsufficientCartQuantity):
        await remove_cart_item(
            uow, RemoveCartItem(command_id="r", user_id=1, product_id=10, quantity=2), _meta()
        )


async def test_order_pays_takes_stock_deducts_points_and_records_the_order() -> None:
    uow = _shop(balance=1_000)

    event = await place_order(uow, _order((10, 2), (20, 1)), _meta("o"))

    assert event.total == 700
    assert event.balance == 300
    assert [(i.product_id, i.quantity, i.unit_price) for i in event.items] == [
        (10, 2, 300),
        (20, 1, 100),
    ]
    assert (uow.products.rows[10].stock, uow.products.rows[20].stock) == (3, 1)
    assert uow.points.transactions == [(1, "use", -700, "o")]
    assert uow.payments.paid == [(1, 700, "o")]


async def test_points_are_checked_before_stock() -> None:
    uow = _shop(balance=100)

    with pytest.raises(InsufficientPoints):
        await place_order(uow, _order((20, 5)), _meta())  # also out of stock


async def test_out_of_stock_names_the_product() -> None:
    uow = _shop()

    with pytest.raises(OutOfStock) as refused:
        await place_order(uow, _order((10, 1), (20, 3)), _meta())
    assert refused.value.product_id == 20


async def test_unknown_product_names_the_product() -> None:
    uow = _shop()

    with pytest.raises(UnknownProduct) as refused:
        await place_order(uow, _order((77, 1)), _meta())
    assert refused.value.product_id == 77


async def test_payment_failing_three_times_is_retried_and_succeeds() -> None:
    uow = _shop()
    uow.payments.failures = 3

    event = await place_order(uow, _order((10, 1)), _meta())

    assert uow.payments.attempts == 4
    assert event.total == 300


async def test_payment_failing_four_times_is_payment_failed() -> None:
    uow = _shop()
    uow.payments.failures = 4

    with pytest.raises(PaymentFailed):
        await place_order(uow, _order((10, 1)), _meta())
    assert uow.payments.attempts == 4
    assert uow.payments.paid == []


async def test_order_from_cart_orders_the_cart_and_empties_those_lines() -> None:
    uow = _shop()
    uow.carts.lines[(1, 10)] = 2
    uow.carts.lines[(1, 20)] = 1

    event = await place_order(
        uow, PlaceOrder(command_id="o", user_id=1, from_cart=True), _meta("o")
    )

    assert [(i.product_id, i.quantity) for i in event.items] == [(10, 2), (20, 1)]
    assert uow.carts.lines == {}


async def test_order_from_an_empty_cart_is_refused() -> None:
    with pytest.raises(EmptyCart):
        await place_order(_shop(), PlaceOrder(command_id="o", user_id=1, from_cart=True), _meta())


def _mixed_orders() -> list[PlaceOrder]:
    """Orders that between them hit every rule, some depending on earlier ones."""
    return [
        _order((10, 2), command_id="o1"),  # placed
        _order((20, 2), command_id="o2"),  # placed, takes all tea
        _order((20, 1), command_id="o3"),  # out of stock now
        _order((77, 1), command_id="o4"),  # unknown product
        PlaceOrder(command_id="o5", user_id=1, from_cart=True),  # the cart: mugs
        PlaceOrder(command_id="o6", user_id=1, from_cart=True),  # cart emptied by o5
        PlaceOrder(command_id="o7", user_id=2, items=[OrderLine(product_id=10, quantity=1)]),
        _order((10, 1), command_id="o8"),  # not enough points left
    ]


async def test_set_based_orders_agree_with_the_one_by_one_handler() -> None:
    one_by_one, as_set = _shop(balance=1_600), _shop(balance=1_600)
    for uow in (one_by_one, as_set):
        uow.carts.lines[(1, 10)] = 2
    commands = [(cmd, _meta(cmd.command_id)) for cmd in _mixed_orders()]

    singles: list[object] = []
    for cmd, meta in commands:
        try:
            singles.append(await place_order(one_by_one, cmd, meta))
        except Rejected as rejection:
            singles.append(rejection)
    batch = await place_orders_set(as_set, commands)

    def shape(answer: object) -> object:
        if isinstance(answer, Rejected):
            return (answer.reason, answer.product_id)
        assert isinstance(answer, OrderPlaced)
        return answer.model_dump()

    assert [shape(a) for a in batch] == [shape(a) for a in singles]
    assert [type(a).__name__ for a in batch] == [
        "OrderPlaced",
        "OrderPlaced",
        "OutOfStock",
        "UnknownProduct",
        "OrderPlaced",
        "EmptyCart",
        "UnknownUser",
        "InsufficientPoints",
    ]
    assert as_set.points.balances == one_by_one.points.balances
    assert as_set.products.rows == one_by_one.products.rows
    assert as_set.carts.lines == one_by_one.carts.lines == {}
    assert as_set.payments.paid == one_by_one.payments.paid
    assert as_set.points.transactions == one_by_one.points.transactions


class FakeLedgerPayments:
    """A gateway that pays inside the transaction (as the default one does)."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int, str]]] = []

    async def pay(self, user_id: int, amount: int, reference: str) -> None:
        await self.pay_many([(user_id, amount, reference)])

    async def pay_many(self, payments: Sequence[tuple[int, int, str]]) -> None:
        self.calls.append(list(payments))


async def test_set_based_orders_pay_a_ledger_gateway_once_for_the_placed_orders() -> None:
    uow = _shop(balance=1_600)
    uow.carts.lines[(1, 10)] = 2
    gateway = FakeLedgerPayments()
    uow.payments = gateway  # type: ignore[assignment]
    commands = [(cmd, _meta(cmd.command_id)) for cmd in _mixed_orders()]

    answers = await place_orders_set(uow, commands)

    placed = [a for a in answers if isinstance(a, OrderPlaced)]
    assert gateway.calls == [[(1, p.total, p.command_id) for p in placed]]
