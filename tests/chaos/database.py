"""What PostgreSQL holds for a chaos run: its rows (to compare with the model) and the
effects recorded more than once for one command id or one order."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeEngine

from shopflow.domain.points import TransactionKind
from shopflow.persistence.tables import (
    cart_items,
    orders,
    point_balances,
    point_transactions,
    products,
    refunds,
    users,
)
from tests.chaos.model import State
from tests.chaos.workload import Workload

_REFUND = point_transactions.c.kind == TransactionKind.REFUND.value


def _among(
    column: ColumnElement[Any], values: Iterable[Any], type_: TypeEngine[Any]
) -> ColumnElement[bool]:
    """`column = ANY(:values)`, one array parameter: an IN list of a long run's command
    ids (tens of thousands) would pass asyncpg's 32,767 parameters."""
    return column == any_(bindparam(None, value=list(values), type_=ARRAY(type_)))


def _users(column: ColumnElement[Any], user_ids: Iterable[int]) -> ColumnElement[bool]:
    return _among(column, user_ids, BigInteger())


def _commands(column: ColumnElement[Any], command_ids: Iterable[str]) -> ColumnElement[bool]:
    return _among(column, command_ids, String())


def _command_ids(workload: Workload) -> list[str]:
    """Every command id of the run: the setup's and the stream's."""
    return list(workload.commands) + [r.command_id for r in workload.setup_commands]


async def read_state(engine: AsyncEngine, workload: Workload) -> State:
    """The rows of the run's users, products and orders."""
    shop = workload.shop
    user_ids = set(shop.registered) | {
        r.command.user_id
        for r in workload.commands.values()
        if r.command is not None and hasattr(r.command, "user_id")
    }
    state = State()
    async with engine.connect() as connection:
        for user in await connection.execute(
            select(users.c.user_id, users.c.name).where(_users(users.c.user_id, user_ids))
        ):
            state.users[user.user_id] = user.name
        for balance in await connection.execute(
            select(point_balances.c.user_id, point_balances.c.balance).where(
                _users(point_balances.c.user_id, user_ids)
            )
        ):
            state.balances[balance.user_id] = balance.balance
        for product in await connection.execute(
            select(products.c.product_id, products.c.stock).where(
                _among(products.c.product_id, shop.products, BigInteger())
            )
        ):
            state.stock[product.product_id] = product.stock
        for line in await connection.execute(
            select(cart_items.c.user_id, cart_items.c.product_id, cart_items.c.quantity).where(
                _users(cart_items.c.user_id, user_ids), cart_items.c.quantity > 0
            )
        ):
            state.carts.setdefault(line.user_id, {})[line.product_id] = line.quantity
        for order in await connection.execute(
            select(orders.c.command_id, orders.c.total).where(
                _commands(orders.c.command_id, _command_ids(workload))
            )
        ):
            state.orders[order.command_id] = order.total
        # Every order of the run's users, by its id: the model knows each from its
        # OrderPlaced.
        for order in await connection.execute(
            select(orders.c.order_id, orders.c.status).where(_users(orders.c.user_id, user_ids))
        ):
            state.statuses[order.order_id] = order.status
        for refund in await connection.execute(
            select(
                point_transactions.c.order_id, func.sum(point_transactions.c.amount).label("amount")
            )
            .where(_REFUND, _users(point_transactions.c.user_id, user_ids))
            .group_by(point_transactions.c.order_id)
        ):
            state.refunds[refund.order_id] = int(refund.amount)  # a numeric sum: a Decimal
        # The payment gateway's refunds, by the order whose payment they give back.
        for refund in await connection.execute(
            select(orders.c.order_id, func.sum(refunds.c.amount).label("amount"))
            .select_from(refunds.join(orders, orders.c.command_id == refunds.c.payment_command_id))
            .where(_users(orders.c.user_id, user_ids))
            .group_by(orders.c.order_id)
        ):
            state.refunded_payments[refund.order_id] = int(refund.amount)
    return state


async def recorded_twice(engine: AsyncEngine, workload: Workload) -> list[str]:
    """Command ids of the run with two point transactions of one kind, or two orders, or
    two refunds; and the run's orders refunded twice (two `refund` transactions, or two
    refunds of its payment), whichever commands did it."""
    command_ids = _command_ids(workload)
    run_orders = select(orders.c.order_id).where(_commands(orders.c.command_id, command_ids))
    found = []
    async with engine.connect() as connection:
        twice_transactions = (
            select(point_transactions.c.command_id, point_transactions.c.kind)
            .where(_commands(point_transactions.c.command_id, command_ids))
            .group_by(point_transactions.c.command_id, point_transactions.c.kind)
            .having(func.count() > 1)
        )
        found += [
            f"{row.command_id}: {row.kind} twice"
            for row in await connection.execute(twice_transactions)
        ]
        twice_orders = (
            select(orders.c.command_id)
            .where(_commands(orders.c.command_id, command_ids))
            .group_by(orders.c.command_id)
            .having(func.count() > 1)
        )
        found += [f"{row.command_id}: two orders" for row in await connection.execute(twice_orders)]
        twice_refunds = (
            select(refunds.c.command_id)
            .where(_commands(refunds.c.command_id, command_ids))
            .group_by(refunds.c.command_id)
            .having(func.count() > 1)
        )
        found += [
            f"{row.command_id}: two refunds" for row in await connection.execute(twice_refunds)
        ]
        orders_refunded_twice = (
            select(point_transactions.c.order_id)
            .where(_REFUND, point_transactions.c.order_id.in_(run_orders))
            .group_by(point_transactions.c.order_id)
            .having(func.count() > 1)
        )
        found += [
            f"order {row.order_id}: two refund transactions"
            for row in await connection.execute(orders_refunded_twice)
        ]
        payments_refunded_twice = (
            select(refunds.c.payment_command_id)
            .where(_commands(refunds.c.payment_command_id, command_ids))
            .group_by(refunds.c.payment_command_id)
            .having(func.count() > 1)
        )
        found += [
            f"{row.payment_command_id}: its payment refunded twice"
            for row in await connection.execute(payments_refunded_twice)
        ]
    return found
