"""`shopflow worker` in a process of its own, pointed at a test's settings (its topics,
consumer groups and servers): started, ready, stopped."""

import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence

import httpx

from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.scratch import service_env
from tests.support.waiting import until


async def start_worker(
    settings: Settings,
    env: Mapping[str, str],
    *,
    capture: bool = False,
    log_level: str = "warning",
    options: Sequence[str] = (),
) -> asyncio.subprocess.Process:
    """`shopflow worker` with the environment of `settings` (`tests.support.scratch.
    service_env`) and the SHOPFLOW_* variables of `env` on top; with `capture`, its stdout
    and stderr piped to the test (which must read them as they come: a full pipe would
    block the worker's writes)."""
    pipe = asyncio.subprocess.PIPE if capture else None
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "shopflow", "worker", "--log-level", log_level, *options),
        env=service_env(settings, **env),
        stdout=pipe,
        stderr=pipe,
    )


async def start_worker_on_port(
    settings: Settings,
    port: int,
    *,
    capture: bool = False,
    log_level: str = "warning",
    options: Sequence[str] = (),
) -> asyncio.subprocess.Process:
    """`shopflow worker`, its HTTP side on `port` (see `start_worker` for `capture`). Its
    topics are provisioned first, as `shopflow topics create` does before a worker starts."""
    await provisioned(settings)
    env = {
        "SHOPFLOW_WORKER_HTTP_PORT": str(port),
        "SHOPFLOW_SESSION_TIMEOUT_MS": "6000",
        "SHOPFLOW_BATCH_TIMEOUT_MS": "20",
    }
    return await start_worker(settings, env, capture=capture, log_level=log_level, options=options)


async def worker_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    """Until the worker's GET /health/ready (on `http`) answers 200; fails if it exits."""

    async def answers_ready() -> bool:
        assert process.returncode is None, f"the worker exited with {process.returncode}"
        try:
            return (await http.get("/health/ready")).status_code == 200
        except httpx.TransportError:  # not listening yet (migrating)
            return False

    await until(answers_ready, 90, "the worker's /health/ready answers 200")


async def worker_stopped(process: asyncio.subprocess.Process) -> int:
    """SIGTERM (unless it has exited), then its exit code; killed if not gone in 60 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(60):
            return await process.wait()
    except TimeoutError:
        process.kill()
        raise
