"""CancelOrder and ShipOrder end to end: a cancel puts the stock back, refunds the total
as a `refund` point transaction linked to the order and refunds the payment, all once;
a ship marks the order shipped; an order is cancelled or shipped, never both and never
back; another user's order is unknown; cancels racing orders for scarce stock create
and lose no unit and no point."""

import asyncio
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import (
    CancelOrder,
    ChargePoints,
    OrderLine,
    PlaceOrder,
    ShipOrder,
)
from shopflow.contracts.events import (
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderShipped,
    OrderShipRejected,
    PointsCharged,
    RejectionReason,
    ResultEvent,
)
from shopflow.contracts.limits import MAX_BALANCE
from shopflow.persistence.tables import orders, point_transactions, refunds
from shopflow.producers.client import ShopflowClient
from tests.support.database import balance_of, balances_of, stock_of, transactions_of
from tests.support.ids import new_command_id
from tests.support.seeding import seed_user
from tests.support.service import funded_user, funded_users, new_product


async def _placed(client: ShopflowClient, user_id: int, *lines: tuple[int, int]) -> OrderPlaced:
    event = await client.send_and_wait(
        PlaceOrder(
            command_id=new_command_id("order"),
            user_id=user_id,
            items=[OrderLine(product_id=p, quantity=q) for p, q in lines],
        )
    )
    assert isinstance(event, OrderPlaced), event
    return event


def _cancel(user_id: int, order_id: int) -> CancelOrder:
    return CancelOrder(command_id=new_command_id("cancel"), user_id=user_id, order_id=order_id)


def _ship(user_id: int, order_id: int) -> ShipOrder:
    return ShipOrder(command_id=new_command_id("ship"), user_id=user_id, order_id=order_id)


async def _order_row(engine: AsyncEngine, order_id: int) -> Any:
    async with engine.connect() as connection:
        statement = select(orders).where(orders.c.order_id == order_id)
        return (await connection.execute(statement)).one()


async def _refund_rows(engine: AsyncEngine, order_id: int) -> list[Any]:
    """The order's `refund` point transactions and its payment's refunds."""
    async with engine.connect() as connection:
        moves = await connection.execute(
            select(
                point_transactions.c.amount,
                point_transactions.c.balance_after,
                point_transactions.c.command_id,
            ).where(
                point_transactions.c.order_id == order_id, point_transactions.c.kind == "refund"
            )
        )
        given_back = await connection.execute(
            select(refunds.c.amount, refunds.c.command_id, refunds.c.payment_command_id)
            .join(orders, orders.c.command_id == refunds.c.payment_command_id)
            .where(orders.c.order_id == order_id)
        )
        return [tuple(row) for row in moves] + [tuple(row) for row in given_back]


async def _rejected(
    client: ShopflowClient, command: CancelOrder | ShipOrder, reason: RejectionReason
) -> None:
    event = await client.send_and_wait(command)
    assert isinstance(event, OrderCancelRejected | OrderShipRejected), event
    assert (event.reason, event.user_id, event.order_id) == (
        reason,
        command.user_id,
        command.order_id,
    )


async def test_a_cancel_puts_the_stock_back_and_refunds_the_total_once(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 10_000)
    mug = await new_product(client, price=1_200, stock=5)
    tea = await new_product(client, price=300, stock=9)
    placed = await _placed(client, user_id, (mug, 2), (tea, 3))
    cancel = _cancel(user_id, placed.order_id)

    # Sent three times: one cancel, one event id, whatever the duplicates.
    for _ in range(3):
        await client.send(cancel)
    results = await client.wait_for_results(cancel.command_id, count=3)

    event = results[0]
    assert isinstance(event, OrderCancelled)
    assert {r.event_id for r in results} == {event.event_id}
    assert (event.user_id, event.order_id, event.refunded, event.balance) == (
        user_id,
        placed.order_id,
        placed.total,
        10_000,
    )
    # The lines as placed (in product order: the order's lines are kept by product).
    assert event.items == sorted(placed.items, key=lambda line: line.product_id)
    assert event.placed_at == placed.occurred_at  # the top-5 bucket it takes units from
    assert (await stock_of(engine, mug), await stock_of(engine, tea)) == (5, 9)
    assert await balance_of(engine, user_id) == 10_000
    assert (await transactions_of(engine, user_id))[-2:] == [
        ("use", -placed.total, placed.command_id),
        ("refund", placed.total, cancel.command_id),
    ]
    assert await _refund_rows(engine, placed.order_id) == [
        (placed.total, 10_000, cancel.command_id),
        (placed.total, cancel.command_id, placed.command_id),
    ]
    row = await _order_row(engine, placed.order_id)
    assert (row.status, row.cancelled_at, row.shipped_at) == ("cancelled", event.occurred_at, None)


async def test_an_order_is_cancelled_or_shipped_never_both_and_never_back(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await funded_user(client, 10_000)
    product_id = await new_product(client, price=100, stock=10)
    shipped = await _placed(client, user_id, (product_id, 1))
    cancelled = await _placed(client, user_id, (product_id, 2))

    ship = await client.send_and_wait(_ship(user_id, shipped.order_id))
    assert isinstance(ship, OrderShipped)
    assert (ship.user_id, ship.order_id) == (user_id, shipped.order_id)
    assert isinstance(
        await client.send_and_wait(_cancel(user_id, cancelled.order_id)), OrderCancelled
    )

    await _rejected(client, _cancel(user_id, shipped.order_id), RejectionReason.ORDER_SHIPPED)
    await _rejected(client, _ship(user_id, shipped.order_id), RejectionReason.ORDER_SHIPPED)
    await _rejected(client, _cancel(user_id, cancelled.order_id), RejectionReason.ORDER_CANCELLED)
    await _rejected(client, _ship(user_id, cancelled.order_id), RejectionReason.ORDER_CANCELLED)

    # Nothing moved twice: one refund, the stock of the cancelled order back once.
    assert await stock_of(engine, product_id) == 10 - 1
    assert await balance_of(engine, user_id) == 10_000 - 100
    assert len(await _refund_rows(engine, cancelled.order_id)) == 2
    assert await _refund_rows(engine, shipped.order_id) == []
    row = await _order_row(engine, shipped.order_id)
    assert (row.status, row.cancelled_at) == ("shipped", None)
    assert row.shipped_at == ship.occurred_at


async def test_another_users_order_and_an_order_that_does_not_exist_are_unknown(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    owner = await funded_user(client, 1_000)
    other = await funded_user(client, 1_000)
    product_id = await new_product(client, price=100, stock=5)
    placed = await _placed(client, owner, (product_id, 1))

    await _rejected(client, _cancel(other, placed.order_id), RejectionReason.UNKNOWN_ORDER)
    await _rejected(client, _ship(other, placed.order_id), RejectionReason.UNKNOWN_ORDER)
    missing = placed.order_id + 10**12
    await _rejected(client, _cancel(owner, missing), RejectionReason.UNKNOWN_ORDER)
    await _rejected(client, _ship(owner, missing), RejectionReason.UNKNOWN_ORDER)

    assert (await _order_row(engine, placed.order_id)).status == "placed"
    assert await balances_of(engine, [owner, other]) == {owner: 900, other: 1_000}
    assert await stock_of(engine, product_id) == 4


async def test_a_refund_past_the_balance_ceiling_is_refused_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        user_id = await seed_user(connection, balance=MAX_BALANCE - 1_000)
    product_id = await new_product(client, price=400, stock=5)
    placed = await _placed(client, user_id, (product_id, 1))
    # Back to the ceiling: the refund of 400 would pass it.
    topped = await client.send_and_wait(
        ChargePoints(command_id=new_command_id("top"), user_id=user_id, amount=1_400)
    )
    assert isinstance(topped, PointsCharged)
    assert topped.balance == MAX_BALANCE

    await _rejected(
        client, _cancel(user_id, placed.order_id), RejectionReason.BALANCE_LIMIT_EXCEEDED
    )

    assert await balance_of(engine, user_id) == MAX_BALANCE
    assert await stock_of(engine, product_id) == 4
    assert (await _order_row(engine, placed.order_id)).status == "placed"
    assert await _refund_rows(engine, placed.order_id) == []


async def test_cancels_racing_orders_for_scarce_stock_create_and_lose_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    """Twelve users order one unit each of a product with 5 in stock, in waves; every
    order placed is cancelled while the next wave orders, and each user sends a second
    cancel of the same order. At the end every unit is back and every point too."""
    users = await funded_users(client, 12, 1_000)
    product_id = await new_product(client, price=70, stock=5)
    rng = random.Random(7)
    placed_ids: list[tuple[int, int]] = []
    for wave in range(3):
        orders_sent = [
            PlaceOrder(
                command_id=new_command_id(f"race{wave}"),
                user_id=u,
                items=[OrderLine(product_id=product_id, quantity=1)],
            )
            for u in users
        ]
        # Per order placed in the wave before: a cancel, the same cancel again, and a
        # second cancel (another command_id), which finds it cancelled.
        cancels = [
            (first, second)
            for user_id, order_id in placed_ids
            for first, second in [(_cancel(user_id, order_id), _cancel(user_id, order_id))]
        ]
        sent: list[Any] = orders_sent + [c for a, b in cancels for c in (a, a, b)]
        rng.shuffle(sent)
        await asyncio.gather(*(client.send(c) for c in sent))
        answers: dict[str, ResultEvent] = {}
        for command in sent:
            answers[command.command_id] = await client.wait_for_result(
                command.command_id, timeout=60
            )
        placed_ids = [
            (e.user_id, e.order_id)
            for e in (answers[c.command_id] for c in orders_sent)
            if isinstance(e, OrderPlaced)
        ]
        for first, second in cancels:
            outcomes = sorted(type(answers[c.command_id]).__name__ for c in (first, second))
            assert outcomes == ["OrderCancelRejected", "OrderCancelled"]
        assert len(placed_ids) <= 5
        assert await stock_of(engine, product_id) == 5 - len(placed_ids)
    for user_id, order_id in placed_ids:
        assert isinstance(await client.send_and_wait(_cancel(user_id, order_id)), OrderCancelled)

    assert await stock_of(engine, product_id) == 5
    assert set((await balances_of(engine, users)).values()) == {1_000}
