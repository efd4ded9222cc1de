"""What PostgreSQL holds for a chaos run: its rows (to compare with the model) and the
effects recorded more than once for one command id."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.tables import (
    cart_items,
    orders,
    point_balances,
    point_transactions,
    products,
    users,
)
from tests.chaos.model import State
from tests.chaos.workload import Workload


async def read_state(engine: AsyncEngine, workload: Workload) -> State:
    """The rows of the run's users, products and orders."""
    shop = workload.shop
    user_ids = set(shop.registered) | {
        r.command.user_id
        for r in workload.commands.values()
        if r.command is not None and hasattr(r.command, "user_id")
    }
    product_ids = shop.plenty + shop.scarce + shop.catalog_only
    command_ids = list(workload.commands)
    state = State()
    async with engine.connect() as connection:
        for user in await connection.execute(
            select(users.c.user_id, users.c.name).where(users.c.user_id.in_(user_ids))
        ):
            state.users[user.user_id] = user.name
        for balance in await connection.execute(
            select(point_balances.c.user_id, point_balances.c.balance).where(
                point_balances.c.user_id.in_(user_ids)
            )
        ):
            state.balances[balance.user_id] = balance.balance
        for product in await connection.execute(
            select(products.c.product_id, products.c.stock).where(
                products.c.product_id.in_(product_ids)
            )
        ):
            state.stock[product.product_id] = product.stock
        for line in await connection.execute(
            select(cart_items.c.user_id, cart_items.c.product_id, cart_items.c.quantity).where(
                cart_items.c.user_id.in_(user_ids), cart_items.c.quantity > 0
            )
        ):
            state.carts.setdefault(line.user_id, {})[line.product_id] = line.quantity
        for order in await connection.execute(
            select(orders.c.command_id, orders.c.total).where(orders.c.command_id.in_(command_ids))
        ):
            state.orders[order.command_id] = order.total
    return state


async def recorded_twice(engine: AsyncEngine, workload: Workload) -> list[str]:
    """Command ids of the run with two point transactions of one kind, or two orders."""
    command_ids = list(workload.commands) + [
        r.command_id for phase in workload.setup for r in phase
    ]
    found = []
    async with engine.connect() as connection:
        twice_transactions = (
            select(point_transactions.c.command_id, point_transactions.c.kind)
            .where(point_transactions.c.command_id.in_(command_ids))
            .group_by(point_transactions.c.command_id, point_transactions.c.kind)
            .having(func.count() > 1)
        )
        found += [
            f"{row.command_id}: {row.kind} twice"
            for row in await connection.execute(twice_transactions)
        ]
        twice_orders = (
            select(orders.c.command_id)
            .where(orders.c.command_id.in_(command_ids))
            .group_by(orders.c.command_id)
            .having(func.count() > 1)
        )
        found += [f"{row.command_id}: two orders" for row in await connection.execute(twice_orders)]
    return found
