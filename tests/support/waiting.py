"""Waiting for what happens asynchronously (a consumer, an aggregator, a process), polled
every 0.1 s. Two helpers, not one, because they fail differently:

- `eventually(check)`: an assertion retried until it holds; at the deadline its own last
  AssertionError is raised, saying what was wrong.
- `until(condition, timeout, what)`: a yes-or-no question asked until it says yes, the
  whole wait (a hanging question too) bounded by `timeout`; at the deadline an
  AssertionError naming `what`.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], object], timeout: float = 15.0) -> None:
    """Retry an async assertion until it holds (the aggregator is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                await result
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None
