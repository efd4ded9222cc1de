from datetime import UTC, datetime, timedelta

from shopflow.domain.top_products import Sale, in_window, rank, top_of, window_end, window_start

NOW = datetime(2040, 1, 10, 12, 30, 45, tzinfo=UTC)


def test_window_runs_from_the_minute_72_hours_ago_to_the_end_of_this_minute() -> None:
    assert window_start(NOW) == datetime(2040, 1, 7, 12, 30, tzinfo=UTC)
    assert window_end(NOW) == datetime(2040, 1, 10, 12, 31, tzinfo=UTC)
    assert in_window(NOW - timedelta(hours=72), NOW)  # same minute, 45 s earlier: counts
    assert not in_window(window_start(NOW) - timedelta(microseconds=1), NOW)
    assert not in_window(window_end(NOW), NOW)


def test_rank_orders_by_units_then_lower_id_and_keeps_five() -> None:
    units = {9: 5, 3: 5, 7: 10, 1: 1, 2: 2, 4: 3, 5: 0}

    assert rank(units) == [(7, 10), (3, 5), (9, 5), (4, 3), (2, 2)]


def test_reference_counts_each_event_once_and_only_inside_the_window() -> None:
    sales = [
        Sale("a", NOW - timedelta(hours=1), ((1, 2),)),
        Sale("a", NOW - timedelta(hours=1), ((1, 2),)),  # redelivered
        Sale("b", NOW - timedelta(hours=73), ((2, 50),)),  # too old
        Sale("c", NOW - timedelta(hours=71), ((2, 1), (3, 1))),
    ]

    assert top_of(sales, NOW) == [(1, 2), (2, 1), (3, 1)]
