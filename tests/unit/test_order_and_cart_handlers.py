"""The cart and order handlers against in-memory ports (no I/O), each run through its
binding (its rows locked, then the handler): the rules, the order of the checks, and
how a batch's commands see each other's effects. Integration tests check the same
against PostgreSQL, with concurrency."""

from shopflow.contracts.commands import AddCartItem, OrderLine, PlaceOrder, RemoveCartItem
from shopflow.contracts.events import CartItemAdded, CartItemRemoved, OrderPlaced
from shopflow.domain.catalog import Product
from shopflow.domain.errors import OutOfStock, PaymentFailed, Rejected, UnknownProduct
from tests.support.fakes import FakeUnitOfWork
from tests.support.handling import handled, names


def _shop(balance: int = 10_000) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    uow.state.users[1] = "Alice"
    uow.state.balances[1] = balance
    uow.state.products[10] = Product(10, "Mug", 300, 5)
    uow.state.products[20] = Product(20, "Tea", 100, 2)
    return uow


def _order(*lines: tuple[int, int], command_id: str = "o", user_id: int = 1) -> PlaceOrder:
    return PlaceOrder(
        command_id=command_id,
        user_id=user_id,
        items=[OrderLine(product_id=p, quantity=q) for p, q in lines],
    )


async def test_adds_accumulate_up_to_the_stock_in_offset_order() -> None:
    uow = _shop()

    answers = await handled(
        uow,
        AddCartItem(command_id="a", user_id=1, product_id=10, quantity=3),
        AddCartItem(command_id="b", user_id=1, product_id=10, quantity=2),
        AddCartItem(command_id="c", user_id=1, product_id=10, quantity=1),  # 6 > stock 5
        AddCartItem(command_id="d", user_id=2, product_id=10, quantity=1),  # unknown user
        AddCartItem(command_id="e", user_id=1, product_id=99, quantity=1),  # unknown product
    )

    assert names(answers) == [
        "CartItemAdded",
        "CartItemAdded",
        "OutOfStock",
        "UnknownUser",
        "UnknownProduct",
    ]
    added = [a for a in answers if isinstance(a, CartItemAdded)]
    assert [a.cart_quantity for a in added] == [3, 5]
    assert isinstance(answers[2], OutOfStock)
    assert answers[2].product_id == 10
    assert isinstance(answers[4], UnknownProduct)
    assert answers[4].product_id == 99
    assert uow.state.cart == {(1, 10): 5}


async def test_removing_down_to_zero_deletes_the_line_and_more_than_held_is_refused() -> None:
    uow = _shop()
    uow.state.cart[(1, 10)] = 2
    uow.state.cart[(1, 20)] = 1

    answers = await handled(
        uow,
        RemoveCartItem(command_id="r1", user_id=1, product_id=10, quantity=2),
        RemoveCartItem(command_id="r2", user_id=1, product_id=20, quantity=2),
    )

    assert names(answers) == ["CartItemRemoved", "InsufficientCartQuantity"]
    assert isinstance(answers[0], CartItemRemoved)
    assert answers[0].cart_quantity == 0
    assert uow.state.cart == {(1, 20): 1}


async def test_an_order_pays_takes_stock_deducts_points_and_records_the_order() -> None:
    uow = _shop(balance=1_000)

    [event] = await handled(uow, _order((10, 2), (20, 1)))

    assert isinstance(event, OrderPlaced)
    assert (event.total, event.balance) == (700, 300)
    assert [(i.product_id, i.quantity, i.unit_price) for i in event.items] == [
        (10, 2, 300),
        (20, 1, 100),
    ]
    assert (uow.state.products[10].stock, uow.state.products[20].stock) == (3, 1)
    assert uow.state.transactions == [(1, "use", -700, "o")]
    assert uow.state.payments == [(1, 700, "o")]


async def test_points_are_checked_before_stock_and_refusals_name_the_product() -> None:
    uow = _shop(balance=100)
    uow.state.balances[2] = 10_000

    answers = await handled(
        uow,
        _order((20, 5), command_id="a"),  # short of points and of stock: points first
        _order((10, 1), (20, 3), command_id="b", user_id=2),  # tea short
        _order((77, 1), command_id="c", user_id=2),
    )

    assert names(answers) == ["InsufficientPoints", "OutOfStock", "UnknownProduct"]
    assert [a.product_id for a in answers if isinstance(a, Rejected)][1:] == [20, 77]
    assert uow.state.payments == []
    assert uow.state.transactions == []


async def test_a_payment_declined_three_times_is_retried_and_succeeds() -> None:
    uow = _shop()
    uow.faults.declines["o"] = 3

    [event] = await handled(uow, _order((10, 1)))

    assert isinstance(event, OrderPlaced)
    assert event.total == 300
    assert uow.faults.payment_attempts == ["o"] * 4


async def test_a_payment_declined_four_times_is_payment_failed_and_frees_the_stock() -> None:
    uow = _shop()
    uow.faults.declines["first"] = 4

    answers = await handled(
        uow,
        _order((20, 2), command_id="first"),  # passes the checks, then is never paid
        _order((20, 2), command_id="second", user_id=1),  # gets the tea the first freed
    )

    assert names(answers) == ["PaymentFailed", "OrderPlaced"]
    assert isinstance(answers[0], PaymentFailed)
    assert "4 times" in str(answers[0])
    assert uow.faults.payment_attempts == ["first"] * 4 + ["second"]
    assert uow.state.payments == [(1, 200, "second")]
    assert uow.state.products[20].stock == 0


async def test_an_order_from_the_cart_orders_it_and_a_second_finds_it_empty() -> None:
    uow = _shop()
    uow.state.cart[(1, 10)] = 2
    uow.state.cart[(1, 20)] = 1

    answers = await handled(
        uow,
        PlaceOrder(command_id="o1", user_id=1, from_cart=True),
        PlaceOrder(command_id="o2", user_id=1, from_cart=True),
    )

    assert names(answers) == ["OrderPlaced", "EmptyCart"]
    assert isinstance(answers[0], OrderPlaced)
    assert [(i.product_id, i.quantity) for i in answers[0].items] == [(10, 2), (20, 1)]
    assert uow.state.cart == {}


async def test_orders_of_a_batch_see_each_others_points_and_stock() -> None:
    uow = _shop(balance=1_600)
    uow.state.cart[(1, 10)] = 2

    answers = await handled(
        uow,
        _order((10, 2), command_id="o1"),  # placed
        _order((20, 2), command_id="o2"),  # placed, takes all tea
        _order((20, 1), command_id="o3"),  # out of stock now
        PlaceOrder(command_id="o5", user_id=1, from_cart=True),  # the cart: 2 mugs
        PlaceOrder(command_id="o7", user_id=2, items=[OrderLine(product_id=10, quantity=1)]),
        _order((10, 1), command_id="o8"),  # 1600 - 600 - 200 - 600 = 200 < 300
    )

    assert names(answers) == [
        "OrderPlaced",
        "OrderPlaced",
        "OutOfStock",
        "OrderPlaced",
        "UnknownUser",
        "InsufficientPoints",
    ]
    assert uow.state.balances == {1: 200}
    assert uow.state.products[10].stock == 1
    assert [p[2] for p in uow.state.payments] == ["o1", "o2", "o5"]
