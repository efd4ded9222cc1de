"""Rows inserted straight into PostgreSQL (not through the command handlers), keeping the
books consistent: an order's total is the sum of its lines, it has one payment and one
'use' point transaction of -total, a cancelled one its refunds, each product's stock is
what was added less what orders not cancelled took, and the balance is the sum of the
transactions (persistence/reconciliation.py checks this over the whole database)."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.persistence.tables import (
    order_lines,
    orders,
    payments,
    point_balances,
    point_transactions,
    products,
    refunds,
    users,
)
from tests.support.ids import new_command_id, new_entity_id

# (product_id, quantity, unit_price)
Line = tuple[int, int, int]


async def balance_after(connection: AsyncConnection, user_id: int, amount: int) -> int:
    """The user's balance after a transaction of `amount`: the sum of their transactions
    so far, plus it (what `balance_after` holds)."""
    so_far = (
        await connection.execute(
            select(func.coalesce(func.sum(point_transactions.c.amount), 0)).where(
                point_transactions.c.user_id == user_id
            )
        )
    ).scalar_one()
    return int(so_far) + amount


async def names_of(connection: AsyncConnection, lines: Sequence[Line]) -> dict[int, str]:
    rows = await connection.execute(
        select(products.c.product_id, products.c.name).where(
            products.c.product_id.in_([product_id for product_id, _, _ in lines])
        )
    )
    return {product_id: name for product_id, name in rows}


async def seed_user(connection: AsyncConnection, *, balance: int = 0, name: str = "Seeded") -> int:
    """A user whose balance is one 'charge' transaction of `balance` points."""
    user_id = new_entity_id()
    await connection.execute(insert(users).values(user_id=user_id, name=name))
    await connection.execute(insert(point_balances).values(user_id=user_id, balance=balance))
    if balance:
        await connection.execute(
            insert(point_transactions).values(
                user_id=user_id,
                kind="charge",
                amount=balance,
                balance_after=balance,
                command_id=new_command_id("seed-charge"),
            )
        )
    return user_id


async def seed_product(
    connection: AsyncConnection, *, name: str = "Seeded product", price: int = 100, stock: int = 0
) -> int:
    product_id = new_entity_id()
    await connection.execute(
        insert(products).values(
            product_id=product_id, name=name, price=price, stock=stock, stock_added=stock
        )
    )
    return product_id


async def seed_order(
    connection: AsyncConnection, user_id: int, lines: Sequence[Line], placed_at: datetime
) -> int:
    """A placed order, its lines, its payment and its points use; the balance pays it and
    the products' stock stays as it was."""
    total = sum(quantity * unit_price for _, quantity, unit_price in lines)
    command_id = new_command_id("seed-order")
    order_id: int = (
        await connection.execute(
            insert(orders)
            .values(user_id=user_id, command_id=command_id, total=total, placed_at=placed_at)
            .returning(orders.c.order_id)
        )
    ).scalar_one()
    names = await names_of(connection, lines)
    await connection.execute(
        insert(order_lines),
        [
            {
                "order_id": order_id,
                "product_id": product_id,
                "user_id": user_id,
                "quantity": quantity,
                "unit_price": unit_price,
                "name": names[product_id],
                "placed_at": placed_at,
            }
            for product_id, quantity, unit_price in lines
        ],
    )
    await connection.execute(
        insert(payments).values(user_id=user_id, command_id=command_id, amount=total)
    )
    await connection.execute(
        insert(point_transactions).values(
            user_id=user_id,
            kind="use",
            amount=-total,
            balance_after=await balance_after(connection, user_id, -total),
            command_id=command_id,
            order_id=order_id,
        )
    )
    await connection.execute(
        update(point_balances)
        .where(point_balances.c.user_id == user_id)
        .values(balance=point_balances.c.balance - total)
    )
    # The stock is left as it was: count the units the order took as added before it,
    # so that the product's stock still equals what was added minus what orders took.
    for product_id, quantity, _ in lines:
        await connection.execute(
            update(products)
            .where(products.c.product_id == product_id)
            .values(stock_added=products.c.stock_added + quantity)
        )
    return order_id


async def seed_cancel(connection: AsyncConnection, order_id: int, at: datetime) -> None:
    """Everything CancelOrder writes for the order, and nothing published: its status,
    its lines back in stock, a 'refund' transaction and the payment's refund."""
    order = (
        await connection.execute(
            update(orders)
            .where(orders.c.order_id == order_id)
            .values(status="cancelled", cancelled_at=at)
            .returning(orders.c.user_id, orders.c.command_id, orders.c.total)
        )
    ).one()
    lines = await connection.execute(
        select(order_lines.c.product_id, order_lines.c.quantity).where(
            order_lines.c.order_id == order_id
        )
    )
    for product_id, quantity in lines.all():
        await connection.execute(
            update(products)
            .where(products.c.product_id == product_id)
            .values(stock=products.c.stock + quantity)
        )
    command_id = new_command_id("seed-cancel")
    await connection.execute(
        insert(point_transactions).values(
            user_id=order.user_id,
            kind="refund",
            amount=order.total,
            balance_after=await balance_after(connection, order.user_id, order.total),
            command_id=command_id,
            order_id=order_id,
        )
    )
    await connection.execute(
        update(point_balances)
        .where(point_balances.c.user_id == order.user_id)
        .values(balance=point_balances.c.balance + order.total)
    )
    await connection.execute(
        insert(refunds).values(
            user_id=order.user_id,
            command_id=command_id,
            payment_command_id=order.command_id,
            amount=order.total,
        )
    )
