"""`shopflow orders USER` and `shopflow statement USER`: a user's orders and points
statement for operators, read as the HTTP queries read them (`queries.history`, the
read-only role), shown as tables or JSON."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rich.table import Table

from shopflow.persistence.database import create_engine
from shopflow.queries.answers import OrdersAnswer, StatementAnswer
from shopflow.queries.history import History, Unknown
from shopflow.settings import Settings


@asynccontextmanager
async def _history(settings: Settings) -> AsyncIterator[History]:
    engine = create_engine(settings.query_database_url, pool_size=1)
    try:
        yield History(engine)
    finally:
        await engine.dispose()


async def orders(
    settings: Settings, user_id: int, *, limit: int, before: int | None
) -> OrdersAnswer | Unknown:
    async with _history(settings) as history:
        return await history.orders(user_id, limit=limit, before=before)


async def statement(
    settings: Settings, user_id: int, *, limit: int, before: int | None
) -> StatementAnswer | Unknown:
    async with _history(settings) as history:
        return await history.statement(user_id, limit=limit, before=before)


def orders_table(answer: OrdersAnswer) -> Table:
    table = Table(title=f"orders of user {answer.user_id}, newest first")
    for column in ("order", "placed at", "status", "total", "items"):
        table.add_column(column, justify="right" if column in ("order", "total") else "left")
    for order in answer.orders:
        items = ", ".join(f"{i.quantity} x {i.name} at {i.unit_price}" for i in order.items)
        table.add_row(
            str(order.order_id),
            order.placed_at.isoformat(),
            order.status,
            str(order.total),
            items,
        )
    if answer.next_before is not None:
        table.caption = f"more: --before {answer.next_before}"
    return table


def statement_table(answer: StatementAnswer) -> Table:
    table = Table(title=f"points statement of user {answer.user_id}, newest first")
    for column in ("transaction", "at", "kind", "amount", "balance after", "order", "command"):
        numeric = column in ("transaction", "amount", "balance after", "order")
        table.add_column(column, justify="right" if numeric else "left")
    for move in answer.transactions:
        table.add_row(
            str(move.transaction_id),
            move.occurred_at.isoformat(),
            move.kind,
            f"{move.amount:+d}",
            str(move.balance_after),
            "" if move.order_id is None else str(move.order_id),
            move.command_id,
        )
    if answer.next_before is not None:
        table.caption = f"more: --before {answer.next_before}"
    return table
