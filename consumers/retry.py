"""The one retry policy: how many times a failed step is tried, and the pauses between.

Every retry of the consumers goes through a `RetryPolicy`: a batch's transaction, a set
of commands, a command alone (`consumers.applier`), and the offset lane's redelivery of
a batch that failed (`consumers.offset_lane`). Which errors are worth a retry is the
caller's question to `consumers.failures.is_transient`; a payment's retries are the
seed's business rule and live in `domain.payment`.

The attempts are an async iterator, so that the step retried stays in its caller's code
and frame: `async for attempt in policy.retrying(...): with attempt: ...`. tenacity's
`AsyncRetrying` reads the same way, but costs about 28 µs a loop against 1 µs here, on
every batch, twice (`python -m tests.bench.retry_cost`; docs/measurements.md#retries).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all, and more while the first failure is less than
    `deadline_s` ago (an outage waited out); the pause after the n-th failure (from 0) is
    `first_pause_s * factor**n`, at most `max_pause_s`."""

    attempts: int
    first_pause_s: float
    factor: float = 2.0
    max_pause_s: float = 30.0
    deadline_s: float = 0.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a RetryPolicy makes at least one attempt")

    def pause(self, failures_before: int) -> float:
        return min(self.first_pause_s * self.factor**failures_before, self.max_pause_s)

    def with_attempts(self, attempts: int) -> "RetryPolicy":
        """`attempts` tries, and no more for a deadline."""
        return replace(self, attempts=attempts, deadline_s=0.0)

    def with_deadline(self, deadline_s: float) -> "RetryPolicy":
        return replace(self, deadline_s=deadline_s)

    def retrying(
        self,
        *,
        retry_if: Callable[[Exception], bool],
        log: logging.Logger,
        what: str,
        wait_out_if: Callable[[Exception], bool] | None = None,
    ) -> "Attempts":
        """The attempts of one step. An error for which `retry_if` is false is raised
        at once, and so is anything that is not an `Exception` (a cancellation above
        all: a stop is never retried); after the last attempt the last error is raised,
        unless `wait_out_if` (by default `retry_if`) holds for it and the deadline has not
        passed. Each failure worth a retry is logged at WARNING, naming `what` failed."""
        return Attempts(self, retry_if, wait_out_if or retry_if, log, what)


class Attempts:
    """The attempts of one step, as an async iterator (see `RetryPolicy.retrying`)."""

    def __init__(
        self,
        policy: RetryPolicy,
        retry_if: Callable[[Exception], bool],
        wait_out_if: Callable[[Exception], bool],
        log: logging.Logger,
        what: str,
    ) -> None:
        self._policy = policy
        self._retry_if = retry_if
        self._wait_out_if = wait_out_if
        self._log = log
        self._what = what
        self._made = 0
        self._first_failed_at: float | None = None
        self._succeeded = False
        self._failure: BaseException | None = None

    def __aiter__(self) -> "Attempts":
        return self

    async def __anext__(self) -> "Attempt":
        if self._succeeded:
            raise StopAsyncIteration
        failure, self._failure = self._failure, None
        if failure is not None:
            if not (isinstance(failure, Exception) and self._retry_if(failure)):
                raise failure
            now = time.monotonic()
            if self._first_failed_at is None:
                self._first_failed_at = now
            waited = now - self._first_failed_at
            if self._policy.deadline_s:
                self._log.warning(
                    "%s failed (attempt %d, at least %d; waited %.1f s of up to %.1f s)",
                    self._what,
                    self._made,
                    self._policy.attempts,
                    waited,
                    self._policy.deadline_s,
                    exc_info=failure,
                )
            else:
                self._log.warning(
                    "%s failed (attempt %d of %d)",
                    self._what,
                    self._made,
                    self._policy.attempts,
                    exc_info=failure,
                )
            if self._made >= self._policy.attempts and (
                waited >= self._policy.deadline_s or not self._wait_out_if(failure)
            ):
                raise failure
            await asyncio.sleep(self._policy.pause(self._made - 1))
        self._made += 1
        return Attempt(self)

    def _ended(self, failure: BaseException | None) -> None:
        if failure is None:
            self._succeeded = True
            if self._first_failed_at is not None:
                # The end of the failures logged above, at their level: how long a
                # step waited (an outage waited out) is read from this line.
                self._log.warning(
                    "%s done at attempt %d, %.1f s after its first failure",
                    self._what,
                    self._made,
                    time.monotonic() - self._first_failed_at,
                )
        self._failure = failure


class Attempt:
    """One try: `with attempt:` keeps what the step raised for the next `__anext__`,
    which retries or raises it."""

    __slots__ = ("_attempts",)

    def __init__(self, attempts: Attempts) -> None:
        self._attempts = attempts

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        failure: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._attempts._ended(failure)
        return failure is not None
