"""A stop that takes too long logs what it is still waiting for."""

import asyncio
import logging

import pytest

from shopflow.slow_stop import reporting_a_slow_stop


async def _waits_forever(event: asyncio.Event) -> None:
    await event.wait()


async def test_a_slow_stop_logs_the_stack_of_what_it_waits_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    stuck = asyncio.create_task(_waits_forever(never))
    with caplog.at_level(logging.ERROR, logger="shopflow.slow_stop"):
        async with reporting_a_slow_stop(0.05):
            await asyncio.sleep(0.2)
    stuck.cancel()

    assert "the stop is still waiting after 0 s" in caplog.text
    assert "_waits_forever" in caplog.text


async def test_a_stop_in_time_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="shopflow.slow_stop"):
        async with reporting_a_slow_stop(0.2):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    assert caplog.text == ""


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def test_the_report_follows_the_awaits_down_to_the_innermost_coroutine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    stuck = asyncio.create_task(_outer(never), name="stuck-task")
    with caplog.at_level(logging.ERROR, logger="shopflow.slow_stop"):
        async with reporting_a_slow_stop(0.05):
            await asyncio.sleep(0.2)
    stuck.cancel()

    report = caplog.text[caplog.text.index("stuck-task:") :]
    assert report.index("in _outer") < report.index("in _inner") < report.index("in wait")
    assert "awaiting <Future pending" in report
