"""PlaceOrder end to end: the seed's checks in order, all or nothing."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import AddCartItem, OrderLine, PlaceOrder, UpsertProduct
from shopflow.contracts.events import OrderPlaced, OrderRejected, ProductUpserted, RejectionReason
from shopflow.persistence.tables import order_lines, point_transactions
from shopflow.producers.client import ShopflowClient
from tests.support.database import balance_of, cart_of, orders_of, stock_of, transactions_of
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import funded_user, new_product, registered_user


def _order(user_id: int, *lines: tuple[int, int]) -> PlaceOrder:
    return PlaceOrder(
        command_id=new_command_id("order"),
        user_id=user_id,
        items=[OrderLine(product_id=p, quantity=q) for p, q in lines],
    )


async def _assert_nothing_changed(
    engine: AsyncEngine, user_id: int, balance: int, stocks: dict[int, int]
) -> None:
    assert await balance_of(engine, user_id) == balance
    assert await orders_of(engine, user_id) == []
    for product_id, stock in stocks.items():
        assert await stock_of(engine, product_id) == stock


async def test_order_takes_stock_deducts_points_and_records_the_order(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 10_000)
    mug = await new_product(client, price=1_200, stock=5)
    tea = await new_product(client, price=300, stock=9)
    command = _order(user_id, (mug, 2), (tea, 3))

    event = await client.send_and_wait(command)

    assert isinstance(event, OrderPlaced)
    assert event.total == 2 * 1_200 + 3 * 300
    assert event.balance == 10_000 - event.total
    assert [(i.product_id, i.quantity, i.unit_price) for i in event.items] == [
        (mug, 2, 1_200),
        (tea, 3, 300),
    ]
    assert (await stock_of(engine, mug), await stock_of(engine, tea)) == (3, 6)
    assert await balance_of(engine, user_id) == event.balance
    assert await orders_of(engine, user_id) == [(event.order_id, event.total)]
    assert (await transactions_of(engine, user_id))[-1] == ("use", -event.total, command.command_id)


async def test_order_exceeding_points_is_rejected_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 999)
    product_id = await new_product(client, price=500, stock=5)

    event = await client.send_and_wait(_order(user_id, (product_id, 2)))

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.INSUFFICIENT_POINTS
    await _assert_nothing_changed(engine, user_id, 999, {product_id: 5})


async def test_order_exceeding_stock_of_one_line_is_rejected_and_changes_no_line(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 100_000)
    plenty = await new_product(client, price=10, stock=50)
    scarce = await new_product(client, price=10, stock=1)

    event = await client.send_and_wait(_order(user_id, (plenty, 5), (scarce, 2)))

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.OUT_OF_STOCK
    assert event.product_id == scarce
    await _assert_nothing_changed(engine, user_id, 100_000, {plenty: 50, scarce: 1})


async def test_order_by_unknown_user_is_rejected_unknown_user(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    product_id = await new_product(client, price=10, stock=5)

    event = await client.send_and_wait(_order(new_entity_id(), (product_id, 1)))

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.UNKNOWN_USER
    assert await stock_of(engine, product_id) == 5


async def test_order_of_unknown_product_is_rejected_naming_it(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 1_000)
    known = await new_product(client, price=10, stock=5)
    unknown = new_entity_id()

    event = await client.send_and_wait(_order(user_id, (known, 1), (unknown, 1)))

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.UNKNOWN_PRODUCT
    assert event.product_id == unknown
    await _assert_nothing_changed(engine, user_id, 1_000, {known: 5})


async def test_order_from_cart_orders_the_cart_and_empties_it(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 10_000)
    mug = await new_product(client, price=700, stock=4)
    tea = await new_product(client, price=50, stock=10)
    for product_id, quantity in ((mug, 2), (tea, 5)):
        await client.send_and_wait(
            AddCartItem(
                command_id=new_command_id(),
                user_id=user_id,
                product_id=product_id,
                quantity=quantity,
            )
        )

    event = await client.send_and_wait(
        PlaceOrder(command_id=new_command_id(), user_id=user_id, from_cart=True)
    )

    assert isinstance(event, OrderPlaced)
    assert sorted((i.product_id, i.quantity) for i in event.items) == sorted([(mug, 2), (tea, 5)])
    assert event.total == 2 * 700 + 5 * 50
    assert await cart_of(engine, user_id) == {}
    assert (await stock_of(engine, mug), await stock_of(engine, tea)) == (2, 5)


async def test_order_from_an_empty_cart_is_rejected_empty_cart(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 1_000)

    event = await client.send_and_wait(
        PlaceOrder(command_id=new_command_id(), user_id=user_id, from_cart=True)
    )

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.EMPTY_CART
    assert await balance_of(engine, user_id) == 1_000


async def test_rejected_order_from_cart_keeps_the_cart(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)  # no points
    product_id = await new_product(client, price=10, stock=10)
    await client.send_and_wait(
        AddCartItem(command_id=new_command_id(), user_id=user_id, product_id=product_id, quantity=3)
    )

    event = await client.send_and_wait(
        PlaceOrder(command_id=new_command_id(), user_id=user_id, from_cart=True)
    )

    assert isinstance(event, OrderRejected)
    assert event.reason is RejectionReason.INSUFFICIENT_POINTS
    assert await cart_of(engine, user_id) == {product_id: 3}


async def test_one_users_orders_apply_in_offset_order(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 1_000)
    product_id = await new_product(client, price=100, stock=100)
    commands = [_order(user_id, (product_id, 1)) for _ in range(12)]

    for command in commands:
        await client.send(command)
    results = [await client.wait_for_result(c.command_id) for c in commands]

    placed = [r for r in results if isinstance(r, OrderPlaced)]
    assert [r.balance for r in placed] == [1_000 - 100 * i for i in range(1, 11)]
    assert all(
        isinstance(r, OrderRejected) and r.reason is RejectionReason.INSUFFICIENT_POINTS
        for r in results[10:]
    )
    assert [p.order_id for p in placed] == sorted(p.order_id for p in placed)


async def test_an_orders_history_keeps_its_points_move_and_the_names_as_ordered(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 10_000)
    mug = await new_product(client, price=1_200, stock=5)
    first = await client.send_and_wait(_order(user_id, (mug, 1)))
    second = await client.send_and_wait(_order(user_id, (mug, 2)))
    assert isinstance(first, OrderPlaced)
    assert isinstance(second, OrderPlaced)
    # The product is renamed afterwards: the lines keep the name it had.
    renamed = await client.send_and_wait(
        UpsertProduct(
            command_id=new_command_id("rename"), product_id=mug, name="Cup", price=1, stock_added=0
        )
    )
    assert isinstance(renamed, ProductUpserted)

    async with engine.connect() as connection:
        uses = (
            await connection.execute(
                select(point_transactions.c.balance_after, point_transactions.c.order_id)
                .where(point_transactions.c.user_id == user_id, point_transactions.c.kind == "use")
                .order_by(point_transactions.c.transaction_id)
            )
        ).all()
        names = (
            (
                await connection.execute(
                    select(order_lines.c.name).where(order_lines.c.product_id == mug)
                )
            )
            .scalars()
            .all()
        )

    assert [tuple(u) for u in uses] == [
        (first.balance, first.order_id),
        (second.balance, second.order_id),
    ]
    assert names == [f"Product {mug % 1000}"] * 2
