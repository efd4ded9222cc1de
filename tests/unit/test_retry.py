"""The one retry policy: attempts, pauses, and which errors it gives up on at once."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from shopflow.consumers.retry import RetryPolicy

log = logging.getLogger(__name__)


async def _retried(
    policy: RetryPolicy,
    step: Callable[[], Awaitable[None]],
    retry_if: Callable[[BaseException], bool],
) -> None:
    async for attempt in policy.retrying(retry_if=retry_if, log=log, what="step"):
        with attempt:
            await step()


def test_pauses_grow_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=5, first_pause_s=0.05, factor=2, max_pause_s=0.15)
    assert [policy.pause(n) for n in range(4)] == [0.05, 0.1, 0.15, 0.15]


async def test_a_step_is_tried_until_it_succeeds_within_its_attempts() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("not yet")
        return "done"

    async for attempt in RetryPolicy(attempts=3, first_pause_s=0).retrying(
        retry_if=lambda _: True, log=log, what="step"
    ):
        with attempt:
            result = await flaky()
    assert result == "done"
    assert calls == 3


async def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {calls}")

    with pytest.raises(ConnectionError, match="attempt 2"):
        await _retried(RetryPolicy(attempts=2, first_pause_s=0), broken, lambda _: True)


async def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    calls = 0

    async def poison() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("same every time")

    with pytest.raises(ValueError, match="same every time"):
        await _retried(
            RetryPolicy(attempts=4, first_pause_s=0),
            poison,
            lambda e: isinstance(e, ConnectionError),
        )
    assert calls == 1


async def test_a_cancellation_is_never_retried() -> None:
    calls = 0

    async def stopped() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _retried(RetryPolicy(attempts=4, first_pause_s=0), stopped, lambda _: True)
    assert calls == 1


def test_a_policy_makes_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RetryPolicy(attempts=0, first_pause_s=0)
