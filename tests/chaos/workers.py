"""`shopflow worker` processes of a chaos run: started, killed, stopped, their logs kept."""

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import httpx

from shopflow.settings import FaultInjection
from tests.support.ports import free_port

STARTED_TIMEOUT_S = 60.0  # for a worker to answer /health/live


class Worker:
    def __init__(
        self, process: asyncio.subprocess.Process, name: str, log: Path, http_port: int
    ) -> None:
        self.process = process
        self.name = name
        self.log = log
        self.http_port = http_port  # its /metrics and /health

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def started(self, timeout: float = STARTED_TIMEOUT_S) -> bool:
        """Wait until the worker answers GET /health/live (it has prepared, its SIGTERM
        handler is in place and its consumers are starting) or has exited; whether it
        answers. A worker SIGTERMed before that (still importing, still checking its
        topics) dies of the signal: no graceful stop to speak of, nothing consumed yet."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/health/live"
        async with httpx.AsyncClient(timeout=1.0) as http:
            while self.alive and time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url)).status_code == 200:
                        return True
                await asyncio.sleep(0.1)
        return False

    async def kill(self) -> None:
        """SIGKILL: no goodbye to the group, nothing flushed."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, the graceful stop; its exit code. A worker still there after
        `timeout` has its stacks dumped into its log (py-spy), and raises TimeoutError."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await self.process.wait()
        except TimeoutError:
            await self._dump_stacks()
            raise

    async def _dump_stacks(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            return
        with self.log.open("ab") as out:
            out.write(b"\n==== py-spy dump: no exit after SIGTERM ====\n")
            out.flush()
            dump = await asyncio.create_subprocess_exec(
                str(py_spy), "dump", "--pid", str(self.process.pid), stdout=out, stderr=out
            )
            await dump.wait()


class WorkerPool:
    """Workers with one environment; each one's stderr goes to a log file of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self._started = 0
        self.workers: list[Worker] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    async def start(self, fault: FaultInjection = FaultInjection.NONE) -> Worker:
        """One more worker; with a fault, it exits abruptly at that point of its first batch."""
        self._started += 1
        name = f"worker-{self._started}" + ("" if fault is FaultInjection.NONE else f"-{fault}")
        log = self._log_dir / f"{name}.log"
        port = free_port()
        env = {
            **self._env,
            "SHOPFLOW_FAULT_INJECTION": fault.value,
            "SHOPFLOW_WORKER_HTTP_PORT": str(port),
        }
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shopflow",
                "worker",
                "--log-level",
                "warning",
                env=env,
                stdout=out,
                stderr=out,
            )
        worker = Worker(process, name, log, port)
        self.workers.append(worker)
        return worker

    async def stop_all(self, timeout: float) -> list[tuple[str, int | None]]:
        """Every live worker stopped gracefully: (name, exit code) of each, None for one
        still there after `timeout` (its stacks dumped, then killed). A worker started
        late (a replacement, just before the stream ended) is let finish its start first:
        the graceful stop is that of a running worker."""
        await asyncio.gather(*(w.started() for w in self.alive))
        alive = self.alive
        codes = await asyncio.gather(*(w.stop(timeout) for w in alive), return_exceptions=True)
        for worker in alive:
            if worker.alive:
                await worker.kill()
        return [
            (w.name, c if isinstance(c, int) else None) for w, c in zip(alive, codes, strict=True)
        ]
