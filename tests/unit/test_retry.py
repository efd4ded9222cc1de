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


async def test_a_step_that_succeeds_after_failures_says_when(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = iter([ConnectionError("away"), ConnectionError("away")])

    async def step() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure

    with caplog.at_level(logging.WARNING, logger=__name__):
        await _retried(RetryPolicy(attempts=3, first_pause_s=0), step, lambda _: True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["step failed (attempt 1 of 3)", "step failed (attempt 2 of 3)"]
    assert lines[2].startswith("step done at attempt 3, 0.0 s after its first failure")


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


async def test_an_outage_is_waited_out_past_the_attempts_until_the_deadline() -> None:
    started = asyncio.get_running_loop().time()
    failed_at: list[float] = []

    async def away_for_a_while() -> None:
        failed_at.append(asyncio.get_running_loop().time() - started)
        if len(failed_at) < 6:
            raise ConnectionError("the database is away")

    policy = RetryPolicy(attempts=2, first_pause_s=0.01, max_pause_s=0.02, deadline_s=5.0)
    await _retried(policy, away_for_a_while, lambda _: True)
    assert len(failed_at) == 6  # four tries past the two attempts


async def test_an_outage_longer_than_the_deadline_raises_its_last_error() -> None:
    calls = 0

    async def away() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {calls}")

    # A deadline ten pauses long, not two: on a loaded machine a 10 ms pause once took
    # 0.7 s, past a 0.1 s deadline after the second attempt.
    policy = RetryPolicy(attempts=2, first_pause_s=0.05, max_pause_s=0.05, deadline_s=1.0)
    with pytest.raises(ConnectionError) as raised:
        await _retried(policy, away, lambda _: True)
    assert calls > 2  # went on past its attempts...
    assert calls < 30  # ...and stopped at the deadline
    assert str(raised.value) == f"attempt {calls}"


async def test_only_what_wait_out_if_accepts_is_waited_out_past_the_attempts() -> None:
    calls = 0

    async def poison() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("the same every time")

    async def retried() -> None:
        policy = RetryPolicy(attempts=2, first_pause_s=0, deadline_s=60.0)
        async for attempt in policy.retrying(
            retry_if=lambda _: True,
            wait_out_if=lambda exc: isinstance(exc, ConnectionError),
            log=log,
            what="step",
        ):
            with attempt:
                await poison()

    with pytest.raises(ValueError, match="the same every time"):
        await retried()
    assert calls == 2


def test_with_attempts_drops_the_deadline() -> None:
    policy = RetryPolicy(attempts=4, first_pause_s=0.05, deadline_s=30.0)
    assert policy.with_attempts(2).deadline_s == 0.0
    assert policy.with_deadline(10.0).deadline_s == 10.0
