"""The `shopflow` command line, run in the test's process (typer's CliRunner).

Its commands call `asyncio.run`, which cannot run inside the test's event loop, and the
session's service only makes progress while that loop runs; so each invocation runs in a
worker thread (`asyncio.to_thread`) while the test awaits it. Two ways to point it at the
servers: `shopflow` reads this process's environment (a fixture sets it), `shopflow_with`
is given the environment of a test's own settings.
"""

import asyncio

from typer.testing import CliRunner, Result

from shopflow.cli import app
from shopflow.settings import Settings
from tests.support.scratch import service_env


async def shopflow(*args: str | int) -> Result:
    """Run `shopflow ARGS...` in a worker thread and return what it printed and its exit code."""

    def invoke() -> Result:
        return CliRunner().invoke(app, [str(arg) for arg in args])

    return await asyncio.to_thread(invoke)


async def shopflow_with(settings: Settings, *args: str, **extra: str) -> Result:
    """`shopflow ARGS...` with the SHOPFLOW_* environment of `settings` (and `extra`
    variables), in a thread."""
    env = service_env(
        settings, SHOPFLOW_SESSION_TIMEOUT_MS=str(settings.session_timeout_ms), **extra
    )
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


def explain(result: Result) -> str:
    return f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
