"""The one notion of "now" the service has: a clock is passed in wherever time is read,
so that tests can fix it."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
