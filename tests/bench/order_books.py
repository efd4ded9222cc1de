"""Placed orders written straight into PostgreSQL in bulk, for the benchmarks that need
thousands of them (the cancel drain, the history queries), keeping the books as `shopflow
check` holds them. Per order, the rows `tests.support.seeding.seed_order` writes one at a
time: the order, its lines, its payment, a `use` transaction of -total whose
`balance_after` is its user's running sum, the balance paid, and the units counted in the
products' `stock_added` (the stock is left as it was). An order seeded cancelled also
gets what `seed_cancel` writes (its status, a `refund` transaction of +total, the
payment's refund) and takes nothing from `stock_added`: stock = added less what orders
not cancelled took.

The users must exist with their balance explained by their transactions and enough
points (`tests.bench.drain.seed`), and the products must cost 1 point (every bench
product does), so that a line of q units costs q points.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shopflow.domain.order_lifecycle import OrderStatus
from shopflow.domain.points import TransactionKind
from shopflow.persistence.tables import (
    order_lines,
    orders,
    payments,
    point_balances,
    point_transactions,
    products,
    refunds,
)


@dataclass(frozen=True)
class SeededOrder:
    order_id: int
    user_id: int
    command_id: str  # the PlaceOrder's, which names its payment
    lines: tuple[tuple[int, int], ...]  # (product_id, quantity) at 1 point a unit
    cancelled: bool

    @property
    def total(self) -> int:
        return sum(quantity for _, quantity in self.lines)


@dataclass(frozen=True)
class _Planned:
    index: int
    user_id: int
    command_id: str
    lines: tuple[tuple[int, int], ...]
    cancelled: bool
    placed_at: datetime

    @property
    def total(self) -> int:
        return sum(quantity for _, quantity in self.lines)


def _plan(
    label: str,
    count: int,
    user_ids: Sequence[int],
    product_ids: Sequence[int],
    lines: int,
    cancel_every: int,
) -> list[_Planned]:
    """Order i is user i % n's (i // n)-th: the users take turns, so a user's orders come
    one per round, and its k-th order is placed k minutes after its (k-1)-th."""
    rng = random.Random(5)
    start = datetime.now(UTC) - timedelta(minutes=count // len(user_ids) + 1)
    planned = []
    for i in range(count):
        nth = i // len(user_ids)
        planned.append(
            _Planned(
                index=i,
                user_id=user_ids[i % len(user_ids)],
                command_id=f"{label}-o{i}",
                lines=tuple((p, rng.randint(1, 3)) for p in rng.sample(product_ids, lines)),
                cancelled=bool(cancel_every) and nth % cancel_every == cancel_every - 1,
                placed_at=start + timedelta(minutes=nth),
            )
        )
    return planned


async def seed_orders(
    engine: AsyncEngine,
    label: str,
    count: int,
    user_ids: Sequence[int],
    product_ids: Sequence[int],
    *,
    lines: int = 2,
    cancel_every: int = 0,
) -> list[SeededOrder]:
    """`count` orders of `lines` lines (1-3 units each, distinct products), spread over
    the users in turn; every `cancel_every`-th order of a user is seeded cancelled (none
    with 0). Command ids are `{label}-o{i}` (the order's) and `{label}-c{i}` (the
    cancel's), so `label` must be the run's own. One transaction."""
    if not user_ids or lines > len(product_ids):
        raise ValueError(f"{len(user_ids)} users, {lines} lines of {len(product_ids)} products")
    planned = _plan(label, count, user_ids, product_ids, lines, cancel_every)
    rounds = -(-count // len(user_ids))
    order_id_of: dict[str, int] = {}
    async with engine.begin() as connection:
        # A round at a time, so that a user's order ids rise with its placed_at (the
        # history pages by order id); each round is one statement of many rows.
        for nth in range(rounds):
            batch = planned[nth * len(user_ids) : (nth + 1) * len(user_ids)]
            returned = await connection.execute(
                insert(orders).returning(orders.c.order_id, orders.c.command_id),
                [
                    {
                        "user_id": o.user_id,
                        "command_id": o.command_id,
                        "total": o.total,
                        "placed_at": o.placed_at,
                        "status": (
                            OrderStatus.CANCELLED if o.cancelled else OrderStatus.PLACED
                        ).value,
                        "cancelled_at": o.placed_at + timedelta(seconds=30)
                        if o.cancelled
                        else None,
                    }
                    for o in batch
                ],
            )
            order_id_of.update({command_id: order_id for order_id, command_id in returned})
        names = dict(
            (
                await connection.execute(
                    select(products.c.product_id, products.c.name).where(
                        products.c.product_id.in_(product_ids)
                    )
                )
            )
            .tuples()
            .all()
        )
        await connection.execute(
            insert(order_lines),
            [
                {
                    "order_id": order_id_of[o.command_id],
                    "product_id": product_id,
                    "user_id": o.user_id,
                    "quantity": quantity,
                    "unit_price": 1,
                    "name": names[product_id],
                    "placed_at": o.placed_at,
                }
                for o in planned
                for product_id, quantity in o.lines
            ],
        )
        await connection.execute(
            insert(payments),
            [
                {"user_id": o.user_id, "command_id": o.command_id, "amount": o.total}
                for o in planned
            ],
        )
        cancelled = [o for o in planned if o.cancelled]
        if cancelled:
            await connection.execute(
                insert(refunds),
                [
                    {
                        "user_id": o.user_id,
                        "command_id": f"{label}-c{o.index}",
                        "payment_command_id": o.command_id,
                        "amount": o.total,
                    }
                    for o in cancelled
                ],
            )
        balances = await _transactions(connection, label, planned, order_id_of, user_ids)
        await connection.execute(
            update(point_balances)
            .where(point_balances.c.user_id == bindparam("b_user_id"))
            .values(balance=point_balances.c.balance + bindparam("b_change")),
            [{"b_user_id": u, "b_change": change} for u, change in balances.items()],
        )
        taken: dict[int, int] = {}
        for o in planned:
            for product_id, quantity in o.lines if not o.cancelled else ():
                taken[product_id] = taken.get(product_id, 0) + quantity
        if taken:
            await connection.execute(
                update(products)
                .where(products.c.product_id == bindparam("b_product_id"))
                .values(stock_added=products.c.stock_added + bindparam("b_taken")),
                [{"b_product_id": p, "b_taken": units} for p, units in taken.items()],
            )
    return [
        SeededOrder(order_id_of[o.command_id], o.user_id, o.command_id, o.lines, o.cancelled)
        for o in planned
    ]


async def _transactions(
    connection: AsyncConnection,
    label: str,
    planned: Sequence[_Planned],
    order_id_of: dict[str, int],
    user_ids: Sequence[int],
) -> dict[int, int]:
    """Each order's `use` (and a cancelled one's `refund` right after it) with its running
    `balance_after`; returns how much each user's balance moved."""
    so_far = dict(
        (
            await connection.execute(
                select(point_transactions.c.user_id, func.sum(point_transactions.c.amount))
                .where(point_transactions.c.user_id.in_(user_ids))
                .group_by(point_transactions.c.user_id)
            )
        )
        .tuples()
        .all()
    )
    balance = {u: int(so_far.get(u) or 0) for u in user_ids}
    moved = dict.fromkeys(user_ids, 0)
    per_user: dict[int, list[dict[str, object]]] = {u: [] for u in user_ids}
    for o in planned:  # in each user's order of placing
        moves = [(TransactionKind.USE, -o.total, o.command_id)]
        if o.cancelled:
            moves.append((TransactionKind.REFUND, o.total, f"{label}-c{o.index}"))
        for kind, amount, command_id in moves:
            balance[o.user_id] += amount
            moved[o.user_id] += amount
            per_user[o.user_id].append(
                {
                    "user_id": o.user_id,
                    "kind": kind.value,
                    "amount": amount,
                    "balance_after": balance[o.user_id],
                    "command_id": command_id,
                    "order_id": order_id_of[o.command_id],
                }
            )
    # `balance_after` must be the running sum in transaction_id order, and the order in
    # which one statement's rows get their identity values is not promised: so each
    # statement holds at most one transaction of a user (its j-th), in rounds.
    for j in range(max(map(len, per_user.values()), default=0)):
        rows = [moves[j] for moves in per_user.values() if len(moves) > j]
        await connection.execute(insert(point_transactions), rows)
    return moved
