from datetime import UTC, datetime, timedelta

from shopflow.domain.top_products import (
    Sale,
    SaleKind,
    in_window,
    rank,
    top_of,
    units_of,
    window_end,
    window_start,
)

NOW = datetime(2040, 1, 10, 12, 30, 45, tzinfo=UTC)
PLACED, CANCELLED = SaleKind.PLACED, SaleKind.CANCELLED


def test_window_runs_from_the_minute_72_hours_ago_to_the_end_of_this_minute() -> None:
    assert window_start(NOW) == datetime(2040, 1, 7, 12, 30, tzinfo=UTC)
    assert window_end(NOW) == datetime(2040, 1, 10, 12, 31, tzinfo=UTC)
    assert in_window(NOW - timedelta(hours=72), NOW)  # same minute, 45 s earlier: counts
    assert not in_window(window_start(NOW) - timedelta(microseconds=1), NOW)
    assert not in_window(window_end(NOW), NOW)


def test_rank_orders_by_units_then_lower_id_and_keeps_five() -> None:
    units = {9: 5, 3: 5, 7: 10, 1: 1, 2: 2, 4: 3, 5: 0}

    assert rank(units) == [(7, 10), (3, 5), (9, 5), (4, 3), (2, 2)]


def test_reference_counts_each_order_once_and_only_inside_the_window() -> None:
    sales = [
        Sale(PLACED, 1, NOW - timedelta(hours=1), ((1, 2),)),
        Sale(PLACED, 1, NOW - timedelta(hours=1), ((1, 2),)),  # redelivered
        Sale(PLACED, 2, NOW - timedelta(hours=73), ((2, 50),)),  # too old
        Sale(PLACED, 3, NOW - timedelta(hours=71), ((2, 1), (3, 1))),
    ]

    assert top_of(sales, NOW) == [(1, 2), (2, 1), (3, 1)]


def test_a_cancelled_order_counts_nothing_whichever_arrives_first_and_however_often() -> None:
    at = NOW - timedelta(hours=5)
    placed = Sale(PLACED, 1, at, ((7, 4), (8, 1)))
    cancelled = Sale(CANCELLED, 1, at, ((7, 4), (8, 1)))
    other = Sale(PLACED, 2, at, ((7, 3),))

    for sales in (
        [placed, other, cancelled],
        [cancelled, placed, other],  # the cancellation first (another partition, a rebuild)
        [placed, cancelled, cancelled, other, placed],  # both redelivered
    ):
        assert units_of(sales, NOW) == {7: 3}, sales
        assert top_of(sales, NOW) == [(7, 3)]


def test_a_cancellation_alone_takes_nothing_from_other_orders() -> None:
    at = NOW - timedelta(hours=5)
    sales = [
        Sale(CANCELLED, 1, at, ((7, 10),)),  # its placement was never seen
        Sale(PLACED, 2, at, ((7, 3),)),
    ]

    assert units_of(sales, NOW) == {7: 3}


def test_an_order_counts_at_its_placed_time_not_the_cancellations() -> None:
    """A cancellation's placed time is its order's, so an order placed 80 hours ago and
    cancelled just now is out of the window either way."""
    long_ago = NOW - timedelta(hours=80)
    sales = [Sale(PLACED, 1, long_ago, ((7, 4),)), Sale(PLACED, 2, NOW, ((8, 1),))]

    assert top_of(sales, NOW) == [(8, 1)]
    assert top_of(sales, long_ago) == [(7, 4)]
    assert top_of([*sales, Sale(CANCELLED, 1, long_ago, ((7, 4),))], long_ago) == []
