"""`shopflow worker` processes of a chaos run: started, killed, stopped, their logs kept."""

import asyncio
import signal
import sys
from pathlib import Path

from shopflow.settings import FaultInjection


class Worker:
    def __init__(self, process: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.process = process
        self.name = name
        self.log = log

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

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
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shopflow",
                "worker",
                "--log-level",
                "warning",
                env={**self._env, "SHOPFLOW_FAULT_INJECTION": fault.value},
                stdout=out,
                stderr=out,
            )
        worker = Worker(process, name, log)
        self.workers.append(worker)
        return worker

    async def stop_all(self, timeout: float) -> list[tuple[str, int | None]]:
        """Every live worker stopped gracefully: (name, exit code) of each, None for one
        still there after `timeout` (its stacks dumped, then killed)."""
        alive = self.alive
        codes = await asyncio.gather(*(w.stop(timeout) for w in alive), return_exceptions=True)
        for worker in alive:
            if worker.alive:
                await worker.kill()
        return [
            (w.name, c if isinstance(c, int) else None) for w, c in zip(alive, codes, strict=True)
        ]
