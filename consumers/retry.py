"""The one retry policy: how many times a failed step is tried, and the pauses between.

Every retry of the consumers goes through a `RetryPolicy`: a batch's transaction, a set
of commands, a command alone (`consumers.applier`), and a lane's redelivery of a batch
that failed (`consumers.offset_lane`). Which errors are worth a retry is the caller's
question to `consumers.failures.is_transient`; a payment's retries are the seed's
business rule and live in `domain.payment`.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; the pause after the n-th failure (from 0) is
    `first_pause_s * factor**n`, at most `max_pause_s`."""

    attempts: int
    first_pause_s: float
    factor: float = 2.0
    max_pause_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a RetryPolicy makes at least one attempt")

    def pause(self, failures_before: int) -> float:
        return min(self.first_pause_s * self.factor**failures_before, self.max_pause_s)

    def with_attempts(self, attempts: int) -> "RetryPolicy":
        return replace(self, attempts=attempts)

    async def run(
        self,
        step: Callable[[], Awaitable[T]],
        *,
        retry_if: Callable[[Exception], bool],
        log: logging.Logger,
        what: str,
    ) -> T:
        """`step()`'s result, trying it again after a pause while it raises an error
        for which `retry_if` is true and attempts are left; then the last error is
        raised. Each failure is logged at WARNING, naming `what` failed."""
        for attempt in range(self.attempts):
            try:
                return await step()
            except Exception as exc:
                retry = attempt + 1 < self.attempts and retry_if(exc)
                log.warning(
                    "%s failed (attempt %d of %d%s)",
                    what,
                    attempt + 1,
                    self.attempts,
                    "" if retry else ", not retried",
                    exc_info=True,
                )
                if not retry:
                    raise
                await asyncio.sleep(self.pause(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")
