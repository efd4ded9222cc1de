"""What each command type's batches lock (its binding's `LockRule`), and that
`lock_rows` takes those rows in the one global order: balances by user, then those
users' cart lines, then orders, then products."""

from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from shopflow.consumers.handlers import BINDINGS
from shopflow.consumers.locking import LockRule, lock_rows
from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.order_lifecycle import OrderStatus, StoredOrder
from shopflow.domain.orders import PricedLine
from tests.support.fakes import FakeUnitOfWork

Calls = list[tuple[str, list[int]]]
NOW = datetime(2026, 12, 7, tzinfo=UTC)
T = TypeVar("T")
Lock = Callable[[Sequence[int]], Coroutine[Any, Any, T]]


def _recording() -> tuple[FakeUnitOfWork, Calls]:
    """A shop of users 1 and 2 (user 1's cart holds product 20) and products 10, 20 and
    30, whose lock statements are recorded with the ids they are given."""
    uow = FakeUnitOfWork()
    uow.state.users.update({1: "A", 2: "B"})
    uow.state.balances.update({1: 100, 2: 100})
    uow.state.products.update({p: Product(p, f"p{p}", 1, 5) for p in (10, 20, 30)})
    uow.state.cart[(1, 20)] = 1
    # Order 1 is user 1's (products 30 and 10), order 2 user 2's (product 20).
    for order_id, user_id, products in ((1, 1, (30, 10)), (2, 2, (20,))):
        lines = tuple(PricedLine(p, 1, 1, f"p{p}") for p in products)
        uow.state.orders.append(
            StoredOrder(
                order_id, user_id, OrderStatus.PLACED, len(lines), NOW, f"o{order_id}", lines
            )
        )
    calls: Calls = []

    def record(name: str, lock: Lock[T]) -> Lock[T]:
        async def recorded(ids: Sequence[int]) -> T:
            calls.append((name, list(ids)))
            return await lock(ids)

        return recorded

    for repository, lock, name in (
        (uow.points, "balances_for_update", "balances"),
        (uow.carts, "lines_of_users_for_update", "carts"),
        (uow.orders, "lock_many", "orders"),
        (uow.products, "lock_many", "products"),
    ):
        setattr(repository, lock, record(name, getattr(repository, lock)))
    return uow, calls


async def _locks(*commands: Command) -> Calls:
    uow, calls = _recording()
    await lock_rows(uow, BINDINGS[type(commands[0])].locks, commands)
    return calls


async def test_registrations_lock_nothing() -> None:
    assert await _locks(RegisterUser(command_id="r", user_id=3, name="C")) == []


async def test_upserts_lock_their_products() -> None:
    calls = await _locks(
        UpsertProduct(command_id="a", product_id=30, name="x", price=1, stock_added=0),
        UpsertProduct(command_id="b", product_id=10, name="y", price=1, stock_added=0),
        UpsertProduct(command_id="c", product_id=30, name="z", price=1, stock_added=0),
    )
    assert calls == [("products", [10, 30])]


async def test_charges_lock_their_users_balances() -> None:
    calls = await _locks(
        ChargePoints(command_id="a", user_id=2, amount=1),
        ChargePoints(command_id="b", user_id=1, amount=1),
    )
    assert calls == [("balances", [2, 1])]  # the statement locks them in id order


@pytest.mark.parametrize("change", [AddCartItem, RemoveCartItem])
async def test_cart_changes_lock_their_users_then_the_carts_of_those_who_exist(
    change: type[AddCartItem | RemoveCartItem],
) -> None:
    calls = await _locks(
        change(command_id="a", user_id=9, product_id=10, quantity=1),  # no such user
        change(command_id="b", user_id=1, product_id=10, quantity=1),
    )
    assert calls == [("balances", [9, 1]), ("carts", [1])]


async def test_orders_lock_users_then_the_carts_ordered_then_every_product_ordered() -> None:
    uow, calls = _recording()
    orders = [
        PlaceOrder(command_id="a", user_id=2, items=[OrderLine(product_id=30, quantity=1)]),
        PlaceOrder(command_id="b", user_id=1, from_cart=True),
        PlaceOrder(command_id="c", user_id=9, from_cart=True),  # no such user
    ]

    locked = await lock_rows(uow, BINDINGS[PlaceOrder].locks, orders)

    assert calls == [("balances", [2, 1, 9]), ("carts", [1]), ("products", [20, 30])]
    assert locked.balances == {1: 100, 2: 100}
    assert locked.carts == {1: [CartLine(20, 1)]}
    assert sorted(locked.products) == [20, 30]


def test_a_rule_cannot_lock_a_cart_without_its_users_balance_row() -> None:
    with pytest.raises(ValueError, match="balance_of"):
        LockRule[ChargePoints](cart_of_user=lambda cmd: True)
    with pytest.raises(ValueError, match="cart_of_user"):
        LockRule[ChargePoints](balance_of=lambda cmd: cmd.user_id, products_in_cart=True)


async def test_cancels_lock_their_users_then_their_orders_then_those_orders_products() -> None:
    calls = await _locks(
        CancelOrder(command_id="a", user_id=2, order_id=2),
        CancelOrder(command_id="b", user_id=1, order_id=1),
        CancelOrder(command_id="c", user_id=1, order_id=9),  # no such order
    )
    assert calls == [("balances", [2, 1, 1]), ("orders", [1, 2, 9]), ("products", [10, 20, 30])]


async def test_ships_lock_only_their_orders() -> None:
    calls = await _locks(
        ShipOrder(command_id="a", user_id=2, order_id=2),
        ShipOrder(command_id="b", user_id=1, order_id=1),
    )
    assert calls == [("orders", [1, 2])]
