"""An open-loop HTTP/1.1 client: requests sent at a fixed arrival rate, each timed from
its intended send time to its answer, recorded in HdrHistogram (as `tests.bench.latency`
times the Kafka path), so a slow server cannot hide its queueing.

wrk is a closed loop (a connection sends its next request when the last is answered),
so its latency is the queueing at fixed concurrency; and httpx costs hundreds of µs of
client CPU a request. This client writes pre-built request bytes (formatted before the
clock starts) on asyncio streams and reads the answers itself: the status line, the
headers up to the blank line, then `Content-Length` bytes.

Connections are a pool of keep-alive ones, a few opened before the clock starts. A
request whose intended time comes with no idle connection opens one (up to
`max_connections`) or waits for one to be freed, and that wait is part of its latency.
A request is a task started at its intended time, so a slow answer never delays the
next request's sending. What the process holds is frozen out of the garbage collector
for the run (`gc.freeze`): the benchmark's process holds the seeded data, and a full
collection of it stopped this client for 83-106 ms, which it then timed as the server's
latency (a p99 of 66-83 ms in 5 s runs at 1,000/s, against 2-3 ms without it). The
client's own CPU (this process's rusage over the run, every thread) is reported per
request, to show it is not the bottleneck (about 150 µs at 1,000/s: 15% of a core).
"""

import asyncio
import gc
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from tests.bench.latency import Latency

PRE_OPENED = 8
MAX_CONNECTIONS = 256
START_DELAY_S = 0.2
ANSWER_TIMEOUT_S = 35.0  # beyond the longest `Prefer: wait` (30 s)


@dataclass(frozen=True)
class OpenLoopRun:
    latency: Latency
    statuses: dict[int, int]  # status -> answers; a failed connection 0, no answer -1
    connections_opened: int
    client_cpu_us_per_request: float


def post(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST's bytes, as written on the connection."""
    return _request("POST", host, path, headers | {"Content-Length": str(len(body))}) + body


def get(host: str, path: str, headers: dict[str, str]) -> bytes:
    """A GET's bytes, as written on the connection."""
    return _request("GET", host, path, headers)


def _request(method: str, host: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join([*lines, "", ""]).encode("ascii")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """(status, whether the connection may be used again)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = 0
        keep = True
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ValueError(f"a {value.strip()} answer: only Content-Length is read")
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Idle keep-alive connections; `None` in the queue is a place for a new one."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self._host, self._port = host, port
        self._idle: asyncio.Queue[_Connection | None] = asyncio.Queue()
        self._left = max_connections  # connections that may still be opened
        self._all: list[_Connection] = []
        self.opened = 0

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        connection = _Connection(reader, writer)
        self._all.append(connection)
        self.opened += 1
        return connection

    async def fill(self, count: int) -> None:
        for _ in range(min(count, self._left)):
            self._left -= 1
            self._idle.put_nowait(await self._open())

    async def take(self) -> _Connection:
        if self._idle.empty() and self._left > 0:
            self._left -= 1
            return await self._open()
        taken = await self._idle.get()
        return taken if taken is not None else await self._open()

    def give(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable:
            self._idle.put_nowait(connection)
        else:
            connection.close()
            self._idle.put_nowait(None)

    def close(self) -> None:
        for connection in self._all:
            connection.close()


async def run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> OpenLoopRun:
    """`requests` sent at `rate` a second, in order, each at its intended time."""
    pool = _Pool(host, port, max_connections)
    await pool.fill(PRE_OPENED)
    histogram = HdrHistogram(1, 120_000_000, 3)  # microseconds, 1 us to 120 s
    statuses: Counter[int] = Counter()

    async def one(request: bytes, due: float) -> None:
        connection = await pool.take()
        reusable = False
        try:
            status, reusable = await connection.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status = 0
        finally:
            pool.give(connection, reusable=reusable)
        statuses[status] += 1
        histogram.record_value(max(1, int((time.perf_counter() - due) * 1e6)))

    gc.collect()
    gc.freeze()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    tasks = []
    start = time.perf_counter() + START_DELAY_S
    try:
        for i, request in enumerate(requests):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request, due)))
        # The last request's deadline: what is not answered by then counts as unanswered
        # (status -1), and at that wait in the histogram, a lower bound of its latency.
        await asyncio.wait(tasks, timeout=ANSWER_TIMEOUT_S)
        unanswered = sum(not task.done() for task in tasks)
        if unanswered:
            statuses[-1] += unanswered
            histogram.record_value(int(ANSWER_TIMEOUT_S * 1e6), unanswered)
    finally:
        for task in tasks:
            task.cancel()
        pool.close()
        gc.unfreeze()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    answered = sum(n for status, n in statuses.items() if status > 0)
    return OpenLoopRun(
        Latency(
            rate,
            len(requests),
            answered,
            histogram.get_value_at_percentile(50) / 1000,
            histogram.get_value_at_percentile(99) / 1000,
            histogram.get_max_value() / 1000,
        ),
        dict(sorted(statuses.items())),
        pool.opened,
        cpu_s * 1e6 / max(len(requests), 1),
    )
