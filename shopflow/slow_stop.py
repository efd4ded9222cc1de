"""A stop that outlasts its graceful timeout says what it is waiting for.

`make chaos` found workers whose graceful stop, after a broker restart, never finished:
the event loop idle, so some task awaits forever, and nothing in the log says which.
This logs every pending task's stack at ERROR once the stop has taken longer than it
may, so that the next one shows where it hangs (the process is then killed by whoever
stopped it, which loses nothing: its batches go to the next owner).
"""

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


def pending_tasks() -> str:
    """Every task of the running loop but the caller's, each with its stack."""
    out = io.StringIO()
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current:
            task.print_stack(limit=12, file=out)
    return out.getvalue()


@contextlib.asynccontextmanager
async def reporting_a_slow_stop(after_s: float) -> AsyncIterator[None]:
    """Within it, a stop that takes more than `after_s` logs the pending tasks."""

    def report() -> None:
        log.error(
            "the stop is still waiting after %.0f s; pending tasks:\n%s", after_s, pending_tasks()
        )

    handle = asyncio.get_running_loop().call_later(after_s, report)
    try:
        yield
    finally:
        handle.cancel()
