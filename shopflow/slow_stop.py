"""A stop that outlasts its graceful timeout says what it is waiting for.

`make chaos` found workers whose graceful stop, after a broker restart, never finished:
the event loop idle, so some task awaits forever, and nothing in the log says which.
This logs where every pending task waits (its whole chain of awaits) at ERROR once the
stop has taken longer than it may, so that the next one shows where it hangs (the process
is then killed by whoever stopped it, which loses nothing: its batches go to the next
owner).
"""

import asyncio
import contextlib
import io
import logging
import types
from collections.abc import AsyncIterator
from typing import cast

log = logging.getLogger(__name__)


def await_chain(task: "asyncio.Task[object]") -> list[str]:
    """Where `task` waits: its coroutine and every coroutine it awaits in turn, outermost
    first, then the future at the bottom. `Task.print_stack` shows only the outermost
    frame of a suspended task, which for a hang inside a library says nothing."""
    lines = []
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = _frame_of(awaited)
        if frame is None:  # the bottom: a future's iterator, or another awaitable
            # The iterator hides its future; the task keeps it (CPython's `_fut_waiter`).
            waiter = getattr(task, "_fut_waiter", None) or awaited
            lines.append(f"    awaiting {repr(waiter)[:300]}")
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaited = _awaited_by(awaited)
    return lines


def _frame_of(awaitable: object) -> types.FrameType | None:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return cast(types.FrameType, frame)
    return None


def _awaited_by(awaitable: object) -> object:
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        awaited = getattr(awaitable, name, None)
        if awaited is not None:
            return awaited
    return None


def pending_tasks() -> str:
    """Every task of the running loop but the caller's, each with where it waits."""
    out = io.StringIO()
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current:
            out.write(f"{task.get_name()}:\n")
            out.write("\n".join(await_chain(task)) + "\n")
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
