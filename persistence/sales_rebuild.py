"""Rebuilding the Redis sales view from PostgreSQL, the source of truth."""

import logging
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.domain.order_lifecycle import OrderStatus
from shopflow.domain.top_products import Sale, SaleKind, window_start
from shopflow.persistence.sales_view import SalesView
from shopflow.persistence.tables import order_lines, orders

log = logging.getLogger(__name__)

# Every order placed at or after :since, with whether it is cancelled and its lines: one
# statement, so one snapshot of the orders and their status.
_ORDERS_SINCE = (
    select(
        orders.c.order_id,
        orders.c.placed_at,
        orders.c.status,
        order_lines.c.product_id,
        order_lines.c.quantity,
    )
    .join(order_lines, order_lines.c.order_id == orders.c.order_id)
    .where(orders.c.placed_at >= bindparam("since"))
    .order_by(orders.c.order_id, order_lines.c.product_id)
)


async def sales_since(engine: AsyncEngine, since: datetime) -> list[Sale]:
    """Every order placed at or after `since`, as the view's sales: one not cancelled as
    its placement, a cancelled one as its cancellation, with its lines (it takes out a
    placement the aggregator applied since the clear, else leaves its marker, so the
    OrderPlaced, redelivered later, adds nothing). Orders are keyed by order id, as live
    events are, so replaying them dedupes against those."""
    sales: dict[int, Sale] = {}
    async with engine.connect() as connection:
        for row in await connection.execute(_ORDERS_SINCE, {"since": since}):
            line = (row.product_id, row.quantity)
            sale = sales.get(row.order_id)
            if sale is None:
                cancelled = row.status == OrderStatus.CANCELLED
                kind = SaleKind.CANCELLED if cancelled else SaleKind.PLACED
                sales[row.order_id] = Sale(kind, row.order_id, row.placed_at, (line,))
            else:
                sales[row.order_id] = Sale(
                    sale.kind, sale.order_id, sale.placed_at, (*sale.lines, line)
                )
    return list(sales.values())


async def rebuild_sales_view(view: SalesView, engine: AsyncEngine, now: datetime) -> bool:
    """Clear the view, replay the window's orders from PostgreSQL, mark it built (on the
    primary it was cleared on). Idempotent: the view after it is PostgreSQL's, whatever it
    held before (a view a failover left short included).

    Returns False when another process holds the rebuild lock. Clearing comes before
    reading PostgreSQL, and an event is published only after its transaction commits, so
    an event the aggregator applied before the clear is in the snapshot. One it applies
    after the clear meets the replay in the `seen` markers, in either order:

    - an OrderPlaced: the replay's placement or cancellation of that order follows or
      precedes it, and the markers count it once, or not at all if cancelled;
    - an OrderCancelled whose cancel is in the snapshot: the replay brings the same
      cancellation, applied once;
    - an OrderCancelled committed after the snapshot (replayed as placed): before the
      replay's placement, its marker keeps that placement from counting; after, it
      takes the units back out.
    """
    if not await view.try_lock_rebuild():
        return False
    try:
        # The primary, before anything is written: a failover before the marker leaves
        # it naming this one, and the view reads as stale (SalesView.state).
        origin = await view.origin()
        await view.clear()
        sales = await sales_since(engine, window_start(now))
        for start in range(0, len(sales), 500):
            await view.apply(sales[start : start + 500], now=now)
        await view.mark_built(now, origin)
        log.info("rebuilt the top-products view from PostgreSQL: %d orders", len(sales))
        return True
    finally:
        await view.unlock_rebuild()
