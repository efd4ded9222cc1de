"""How long the service's reads and its database's writes kept going while a fault
struck, seen from a process of their own (`python -m tests.chaos.probes`), started at the
stream's start and stopped at the fault's end.

- **Queries**: GET /products/{id} of the run's serve (a product of the run's catalog),
  one every `EVERY_S`. An answer under 500 counts (the query read PostgreSQL: a
  replicated one's standby, with the chaos cluster's URLs); a 5xx, or no answer within
  `QUERY_TIMEOUT_S`, does not.
- **Writes**: a transaction that writes WAL (a temporary table's catalog rows, dropped at
  its commit: nothing is left behind) on the service's own database URL, opened as the
  service opens its connections (`connect`, `target_session_attrs=read-write` on the
  chaos cluster), one every `EVERY_S`; a failure drops the connection. A commit counts
  once it is acknowledged: under synchronous replication, once a standby has it. The
  longest gap between two acknowledged commits is how long the database could take no
  write, as a client on the service's URL sees it, which is the part of a command's wait
  that the database itself sets.

Its own process, because the driver's loop runs late on a busy machine (seconds at
worst), and a probe whose timeout fires late measures the driver, not the service. It
prints its counts as one JSON line when it gets SIGTERM.
"""

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Final

import asyncpg
import httpx

from shopflow.persistence.database import asyncpg_connect_args, connect
from shopflow.settings import Settings
from tests.support.scratch import service_env

EVERY_S: Final = 0.1
QUERY_TIMEOUT_S: Final = 2.0
WRITE_TIMEOUT_S: Final = 5.0  # a probe's commit may be cancelled: it writes nothing that stays
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0


@dataclass
class Gaps:
    """Successes, failures, and the longest time between two successes (or from the
    start, or the last success, to a failure)."""

    ok: int = 0
    failed: int = 0
    longest_gap_s: float = 0.0
    _last_ok: float = field(default_factory=time.monotonic)

    def count(self, ok: bool) -> None:
        now = time.monotonic()
        self.longest_gap_s = max(self.longest_gap_s, now - self._last_ok)
        if ok:
            self.ok += 1
            self._last_ok = now
        else:
            self.failed += 1

    def end(self) -> None:
        """The gap still open when probing stops counts too."""
        self.longest_gap_s = max(self.longest_gap_s, time.monotonic() - self._last_ok)


@dataclass(frozen=True)
class ProbeCounts:
    queries_answered: int = 0
    queries_failed: int = 0
    longest_query_gap_s: float = 0.0
    writes_acknowledged: int = 0
    writes_failed: int = 0
    longest_write_gap_s: float = 0.0

    def describe(self) -> str:
        return (
            f"GET queries {self.queries_answered} answered, {self.queries_failed} not, "
            f"longest without an answer {self.longest_query_gap_s:.1f} s; database writes "
            f"{self.writes_acknowledged} acknowledged, {self.writes_failed} not, longest "
            f"without one {self.longest_write_gap_s:.1f} s"
        )


async def _queries(url: str, product_id: int, gaps: Gaps) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=QUERY_TIMEOUT_S) as http:
        while True:
            try:
                ok = (await http.get(f"/products/{product_id}")).status_code < 500
            except Exception:  # no answer, whatever the cause
                ok = False
            gaps.count(ok)
            await asyncio.sleep(EVERY_S)


async def _writes(settings: Settings, gaps: Gaps) -> None:
    options = asyncpg_connect_args(settings.database_url)
    connection: asyncpg.Connection | None = None
    while True:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                if connection is None:
                    connection = await connect(
                        options, host_timeout_s=settings.db_connect_timeout_s
                    )
                await connection.execute(
                    "BEGIN; CREATE TEMP TABLE chaos_write_probe (i int) ON COMMIT DROP; COMMIT;"
                )
            gaps.count(True)
        except Exception:  # asyncpg's "no host will do" is none of its error bases
            gaps.count(False)
            if connection is not None:
                connection.terminate()
                connection = None
        await asyncio.sleep(EVERY_S)


async def _main(url: str, product_id: int) -> None:
    settings = Settings()
    queries, writes = Gaps(), Gaps()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        asyncio.create_task(_queries(url, product_id, queries)),
        asyncio.create_task(_writes(settings, writes)),
    ]
    print("probing", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    queries.end()
    writes.end()
    counts = ProbeCounts(
        queries.ok,
        queries.failed,
        queries.longest_gap_s,
        writes.ok,
        writes.failed,
        writes.longest_gap_s,
    )
    print(json.dumps(asdict(counts)), flush=True)


class Probes:
    """The probe process of one run, seen from the driver."""

    def __init__(self, url: str, product_id: int, settings: Settings) -> None:
        self._args = [url, str(product_id)]
        self._settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self.counts = ProbeCounts()

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.chaos.probes",
            *self._args,
            env=service_env(self._settings),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            await self._process.stdout.readline()  # "probing"

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                line = await process.stdout.readline()
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise RuntimeError("the probe process did not stop") from None
        self.counts = ProbeCounts(**json.loads(line))


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
