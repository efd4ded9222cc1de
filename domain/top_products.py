"""Top products: the 5 products with the most units sold in the last 72 hours, ties
broken by the lower product id (CONTRACT.md).

Resolution is one minute: an order counts from the minute of its `occurred_at` until
that same minute 72 hours later. Precisely, an order placed at `t` counts at time `now`
when `window_start(now) <= t < window_end(now)`: from `now - 72h` rounded down to the
minute, to the end of `now`'s minute. The Redis view (minute and hour buckets), the
PostgreSQL fallback and the reference computation below all use this one definition,
so they agree exactly.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class Sale:
    """One order's lines as the aggregator sees them (from an OrderPlaced event)."""

    event_id: str
    occurred_at: datetime
    lines: tuple[tuple[int, int], ...]  # (product id, quantity)


def top_of(sales: Iterable[Sale], now: datetime, limit: int = TOP_LIMIT) -> list[tuple[int, int]]:
    """The reference computation: plain Python over the sales, each event counted once."""
    units: Counter[int] = Counter()
    seen: set[str] = set()
    for sale in sales:
        if sale.event_id in seen or not in_window(sale.occurred_at, now):
            continue
        seen.add(sale.event_id)
        for product_id, quantity in sale.lines:
            units[product_id] += quantity
    return rank(units, limit)
