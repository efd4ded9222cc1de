"""`shopflow serve --no-consume` processes of a chaos run: the HTTP side (queries, and
writes turned into commands) beside the run's workers, which do all the consuming. A
serve that consumed too would be a consumer no worker fault touches, and would change
what `rebalance` or `sigterm` try; its faults are its own (`faults.serve_kill`).

Started (and, once SIGKILLed, started again on the same port: its clients know one
address), stopped with SIGTERM; its log beside the workers', each start appended.
"""

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Final

import httpx

from shopflow.settings import Settings
from tests.support.ports import free_port
from tests.support.scratch import service_env

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 45.0
# The run's writers send far more than one caller's default limit (20/s, 600/min): the
# rate limits are not what the suite tries.
WRITE_RATE_LIMIT: Final = "100000/second"


class Serve:
    def __init__(self, settings: Settings, log: Path, *, log_level: str = "warning") -> None:
        self.settings = settings
        self.log = log
        self.log_level = log_level
        self.port = free_port()
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start it and wait until it answers GET /health/live (its lifespan has run: it
        has checked its topics, and its command sender is started)."""
        self.starts += 1
        env = service_env(
            self.settings,
            SHOPFLOW_HTTP_PORT=str(self.port),
            SHOPFLOW_HTTP_WRITE_RATE_LIMIT=WRITE_RATE_LIMIT,
        )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"==== start {self.starts} ====\n".encode())
            out.flush()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shopflow",
                "serve",
                "--no-consume",
                "--log-level",
                self.log_level,
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            await self._answering()
        except BaseException:
            await self.kill()
            raise

    async def _answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as http:
            while True:
                if self._process is None or self._process.returncode is not None:
                    code = None if self._process is None else self._process.returncode
                    raise RuntimeError(f"shopflow serve exited {code} (see {self.log})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"shopflow serve not answering in {START_TIMEOUT_S} s")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health/live")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: the requests in flight get no answer."""
        if self._process is None:
            return
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGKILL)
        await self._process.wait()

    async def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL if it does not exit in time); its exit code, None
        if it was never started."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            self._process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                return await self._process.wait()
        except TimeoutError:
            await self.kill()
            return self._process.returncode

    def shutdown_failed(self) -> bool:
        """Whether its log says its lifespan's shutdown raised: uvicorn says so and still
        exits as after a clean stop (a dead ledger listener's error went unseen so)."""
        return self.log.exists() and "Application shutdown failed" in self.log.read_text(
            errors="replace"
        )


def stopped_cleanly(code: int | None) -> bool:
    """uvicorn raises the signal it caught again once it has shut down cleanly."""
    return code in (None, 0, -signal.SIGTERM)
