"""GET /products/top's answer held in the process (`queries.top_products.TopProducts`):
computed by one caller at a time, held for `cache_ms` from when its computation began,
and a failed computation held by nobody."""

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shopflow.persistence.sales_view import SalesView, ViewState
from shopflow.queries.answers import TopProductAnswer
from shopflow.queries.read_model import ReadModel
from shopflow.queries.top_products import TopProducts

CACHE_MS = 200


class FakeView:
    """The Redis view: built, each sum of the window counted and taking `delay_s`."""

    def __init__(self) -> None:
        self.sums = 0
        self.delay_s = 0.05
        self.failing = False

    async def state(self) -> ViewState:
        return ViewState.BUILT

    async def top(self, _now: datetime) -> list[tuple[int, int]]:
        self.sums += 1
        await asyncio.sleep(self.delay_s)
        if self.failing:
            raise RuntimeError("the sum failed")
        return [(7, self.sums)]


class FakeReadModel:
    async def named(self, ranked: list[tuple[int, int]]) -> list[TopProductAnswer]:
        return [TopProductAnswer(product_id=p, name=f"p{p}", units_sold=u) for p, u in ranked]


async def _never_rebuilt(_now: datetime) -> None:
    raise AssertionError("a built view is not rebuilt")


def _top(view: FakeView, cache_ms: int = CACHE_MS) -> TopProducts:
    return TopProducts(
        cast(SalesView, view),
        cast(ReadModel, FakeReadModel()),
        _never_rebuilt,
        lambda: datetime.now(UTC),
        cache_ms=cache_ms,
    )


def _units(answer: Any) -> int:
    products, source = answer
    assert source == "redis"
    return int(products[0].units_sold)


async def test_requests_at_once_share_one_computation() -> None:
    view = FakeView()
    top = _top(view)
    answers = await asyncio.gather(*(top.top() for _ in range(100)))
    assert view.sums == 1
    assert {_units(a) for a in answers} == {1}


async def test_the_answer_is_held_for_cache_ms_then_computed_again() -> None:
    view = FakeView()
    top = _top(view)
    assert _units(await top.top()) == 1
    assert _units(await top.top()) == 1  # held
    assert view.sums == 1
    await asyncio.sleep(CACHE_MS / 1000)  # counted from when the computation began
    assert _units(await top.top()) == 2
    assert view.sums == 2


async def test_without_cache_ms_each_request_after_a_computation_computes_again() -> None:
    view = FakeView()
    top = _top(view, cache_ms=0)
    await top.top()
    await top.top()
    assert view.sums == 2


async def test_a_failed_computation_fails_its_waiters_and_is_not_held() -> None:
    view = FakeView()
    view.failing = True
    top = _top(view)
    outcomes = await asyncio.gather(*(top.top() for _ in range(5)), return_exceptions=True)
    assert view.sums == 1
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    view.failing = False
    assert _units(await top.top()) == 2
    assert view.sums == 2


async def test_a_request_that_goes_away_leaves_the_computation_to_the_others() -> None:
    view = FakeView()
    view.delay_s = 0.2
    top = _top(view)
    leaving = asyncio.create_task(top.top())
    staying = asyncio.create_task(top.top())
    await asyncio.sleep(0.05)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert _units(await staying) == 1
    assert view.sums == 1
