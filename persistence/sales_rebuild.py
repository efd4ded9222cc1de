"""Rebuilding the Redis sales view from PostgreSQL, the source of truth."""

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.domain.top_products import Sale, window_start
from shopflow.persistence.sales_view import SalesView
from shopflow.persistence.tables import order_lines, orders, processed_commands

log = logging.getLogger(__name__)


async def sales_since(engine: AsyncEngine, since: datetime) -> list[Sale]:
    """Every order placed at or after `since`, with the event id its OrderPlaced carried
    (from the ledger), so replaying them into the view dedupes against live events."""
    statement = (
        select(
            orders.c.order_id,
            orders.c.placed_at,
            processed_commands.c.event_id,
            order_lines.c.product_id,
            order_lines.c.quantity,
        )
        .join(order_lines, order_lines.c.order_id == orders.c.order_id)
        .join(processed_commands, processed_commands.c.command_id == orders.c.command_id)
        .where(orders.c.placed_at >= since)
        .order_by(orders.c.order_id, order_lines.c.product_id)
    )
    sales: dict[int, Sale] = {}
    async with engine.connect() as connection:
        for row in await connection.execute(statement):
            sale = sales.get(row.order_id)
            line = (row.product_id, row.quantity)
            if sale is None:
                sales[row.order_id] = Sale(str(row.event_id), row.placed_at, (line,))
            else:
                sales[row.order_id] = Sale(sale.event_id, sale.occurred_at, (*sale.lines, line))
    return list(sales.values())


async def rebuild_sales_view(view: SalesView, engine: AsyncEngine, now: datetime) -> bool:
    """Clear the view, replay the window's orders from PostgreSQL, mark it built.

    Returns False when another process holds the rebuild lock. Clearing comes before
    reading PostgreSQL: an event the aggregator applies meanwhile is either in the
    snapshot (and deduped by its event id) or applied after the clear (and kept).
    """
    if not await view.try_lock_rebuild():
        return False
    try:
        await view.clear()
        sales = await sales_since(engine, window_start(now))
        for start in range(0, len(sales), 500):
            await view.apply(sales[start : start + 500], now=now)
        await view.mark_built(now)
        log.info("rebuilt the top-products view from PostgreSQL: %d orders", len(sales))
        return True
    finally:
        await view.unlock_rebuild()
