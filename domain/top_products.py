"""Top products: the 5 products with the most units sold in the last 72 hours, ties
broken by the lower product id (CONTRACT.md).

Resolution is one minute: an order counts from the minute of its `occurred_at` until
that same minute 72 hours later. Precisely, an order placed at `t` counts at time `now`
when `window_start(now) <= t < window_end(now)`: from `now - 72h` rounded down to the
minute, to the end of `now`'s minute. The Redis view (minute and hour buckets), the
PostgreSQL fallback and the reference computation below all use this one definition,
so they agree exactly.

Cancelled orders do not count (CONTRACT.md): an order counts once it is placed, at its
placed time, until it is cancelled. The view sees a placement (OrderPlaced) and maybe a
cancellation (OrderCancelled) of each order, in any order and any number of times;
`top_of` below is what it must come to.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

WINDOW = timedelta(hours=72)
WINDOW_HOURS = 72
TOP_LIMIT = 5


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def window_start(now: datetime) -> datetime:
    """The first instant that counts (inclusive)."""
    return floor_minute(now - WINDOW)


def window_end(now: datetime) -> datetime:
    """The first instant that no longer counts (exclusive): the end of now's minute."""
    return floor_minute(now) + timedelta(minutes=1)


def in_window(placed_at: datetime, now: datetime) -> bool:
    return window_start(now) <= placed_at < window_end(now)


def rank(units: Mapping[int, int], limit: int = TOP_LIMIT) -> list[tuple[int, int]]:
    """(product id, units) of the best sellers: most units first, then lower id."""
    ordered = sorted(
        ((product_id, sold) for product_id, sold in units.items() if sold > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return ordered[:limit]


class SaleKind(StrEnum):
    """What a `Sale` says of its order. The values are the view's markers (`p:<order id>`,
    `c:<order id>`, docs/design.md, "Top products")."""

    PLACED = "p"
    CANCELLED = "c"


@dataclass(frozen=True)
class Sale:
    """One order's lines as the aggregator sees them: placed (an OrderPlaced, or a
    rebuild's order that is not cancelled) or cancelled (an OrderCancelled, or a rebuild's
    cancelled order). Both carry the order's placed time: a cancellation takes the units
    back out of the buckets they were counted in."""

    kind: SaleKind
    order_id: int
    placed_at: datetime
    lines: tuple[tuple[int, int], ...]  # (product id, quantity)


def units_of(sales: Iterable[Sale], now: datetime) -> Counter[int]:
    """Units per product in the window at `now`: each order counted once, with the lines
    of its (first) placement, unless a cancellation of it is among the sales, whichever
    comes first."""
    placed: dict[int, Sale] = {}
    cancelled: set[int] = set()
    for sale in sales:
        if sale.kind is SaleKind.CANCELLED:
            cancelled.add(sale.order_id)
        else:
            placed.setdefault(sale.order_id, sale)
    units: Counter[int] = Counter()
    for order_id, sale in placed.items():
        if order_id in cancelled or not in_window(sale.placed_at, now):
            continue
        for product_id, quantity in sale.lines:
            units[product_id] += quantity
    return units


def top_of(sales: Iterable[Sale], now: datetime, limit: int = TOP_LIMIT) -> list[tuple[int, int]]:
    """The reference computation: plain Python over the sales (`units_of`), ranked."""
    return rank(units_of(sales, now), limit)
