"""What a retried step costs when it succeeds at once: `RetryPolicy.retrying`'s loop
around a step that returns, against the bare call, and tenacity's `AsyncRetrying` when it
is installed (`pip install tenacity`), which reads the same way.

    .venv/bin/python -m tests.bench.retry_cost
"""

import asyncio
import importlib.util
import logging
import time

from shopflow.consumers.failures import is_transient
from shopflow.consumers.retry import RetryPolicy

ROUNDS = 20_000
log = logging.getLogger(__name__)


async def _step() -> int:
    return 1


async def _ours() -> None:
    policy = RetryPolicy(attempts=4, first_pause_s=0.05)
    async for attempt in policy.retrying(retry_if=is_transient, log=log, what="step"):
        with attempt:
            await _step()


async def _tenacity() -> None:
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

    retrying = AsyncRetrying(
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.05),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await _step()


async def _per_call_us(loop: object) -> float:
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await loop()  # type: ignore[operator]
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def main() -> None:
    print(f"bare call: {await _per_call_us(_step):.2f} µs")
    print(f"RetryPolicy.retrying: {await _per_call_us(_ours):.1f} µs")
    if importlib.util.find_spec("tenacity") is not None:
        print(f"tenacity AsyncRetrying: {await _per_call_us(_tenacity):.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
