"""The one retry policy: how many times a failed step is tried, and the pauses between.

Every retry of the consumers goes through a `RetryPolicy`: a batch's transaction, a set
of commands, a command alone (`consumers.applier`), and the offset lane's redelivery of
a batch that failed (`consumers.offset_lane`). Which errors are worth a retry is the
caller's question to `consumers.failures.is_transient`; a payment's retries are the
seed's business rule and live in `domain.payment`. The attempts are tenacity's, as an
async iterator, so that the step retried stays in its caller's code and frame.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)


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

    def retrying(
        self, *, retry_if: Callable[[BaseException], bool], log: logging.Logger, what: str
    ) -> AsyncRetrying:
        """The attempts: `async for attempt in policy.retrying(...): with attempt: ...`.
        An error for which `retry_if` is false is raised at once, and so is anything that
        is not an `Exception` (a cancellation above all: a stop must not be retried);
        after the last attempt the last error is raised. Each failure that was worth a
        retry is logged at WARNING, naming `what` failed."""

        def logged(state: RetryCallState) -> None:
            log.warning(
                "%s failed (attempt %d of %d)",
                what,
                state.attempt_number,
                self.attempts,
                exc_info=state.outcome.exception() if state.outcome else None,
            )

        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(
                multiplier=self.first_pause_s, exp_base=self.factor, max=self.max_pause_s
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and retry_if(exc)),
            after=logged,
            reraise=True,
        )
