"""Benchmark part: `shopflow serve` scaled out on one host, several processes on one port
(SO_REUSEPORT, `shopflow.cli.processes`), against one process measured in the same run.

`tests.bench.http_queries` calls `measure` after its single-process loads: the processes
are launched with the same environment, on a port of their own together, each with a
port of its own as well (SHOPFLOW_HTTP_PROCESS_PORT) and its database pools sized per
process (SHOPFLOW_DB_POOL_SIZE: the single process's size split between them, so the
database holds as many connections as before). The same wrk load as the single
process's (`tests.bench.http_load`) runs against the shared port; serve's CPU is the sum
of every process's. Each process's `shopflow_http_requests_total`, read on its own port
before and after, says how the kernel spread the requests (each scrape counts itself,
once, in its process).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from tests.bench import http_load
from tests.bench.http_load import EndpointLoad, Target
from tests.support import dashboard
from tests.support.ports import free_port

Launch = Callable[[dict[str, str]], Awaitable[asyncio.subprocess.Process]]
Stop = Callable[[asyncio.subprocess.Process], Awaitable[None]]
Ready = Callable[[str, asyncio.subprocess.Process], Awaitable[float]]


@dataclass(frozen=True)
class ScaleOut:
    processes: int
    pool_size_per_process: int
    load: EndpointLoad  # against the shared port; serve's CPU summed over the processes
    requests_per_process: list[int]  # from each process's own counter
    single_requests_per_second: float  # one process, same endpoint, same run

    @property
    def ratio(self) -> float:
        return self.load.requests_per_second / self.single_requests_per_second

    def line(self) -> str:
        spread = " / ".join(f"{n:,}" for n in self.requests_per_process)
        return (
            f"{self.processes} serve processes on one port (pools of "
            f"{self.pool_size_per_process} each): {self.load.line()}; "
            f"{self.ratio:.2f}x one process; requests per process {spread}"
        )


async def measure(
    wrk: str,
    target: Target,
    env: dict[str, str],
    *,
    processes: int,
    pool_size: int,
    single: EndpointLoad,
    metrics_token: str,
    connections: int,
    seconds: int,
    launch: Launch,
    stop: Stop,
    ready: Ready,
) -> ScaleOut:
    shared = free_port()
    own = [free_port() for _ in range(processes)]
    per_process = max(1, pool_size // processes)
    envs = [
        env
        | {
            "SHOPFLOW_HTTP_PORT": str(shared),
            "SHOPFLOW_HTTP_PROCESS_PORT": str(port),
            "SHOPFLOW_DB_POOL_SIZE": str(per_process),
        }
        for port in own
    ]
    own_urls = [f"http://127.0.0.1:{port}" for port in own]
    async with _running(envs, launch, stop) as servers:
        for url, server in zip(own_urls, servers, strict=True):
            await ready(url, server)
        before = [await _requests_counted(url, metrics_token) for url in own_urls]
        load = await http_load.measure(
            wrk,
            target,
            f"http://127.0.0.1:{shared}",
            [server.pid for server in servers],
            connections,
            seconds,
        )
        after = [await _requests_counted(url, metrics_token) for url in own_urls]
    # The warm-up's requests are in the counts too, and each scrape once.
    taken = [int(a - b) - 1 for a, b in zip(after, before, strict=True)]
    return ScaleOut(processes, per_process, load, taken, single.requests_per_second)


@contextlib.asynccontextmanager
async def _running(
    envs: list[dict[str, str]], launch: Launch, stop: Stop
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    servers: list[asyncio.subprocess.Process] = []
    try:
        for env in envs:
            servers.append(await launch(env))
        yield servers
    finally:
        for server in servers:
            await stop(server)


async def _requests_counted(url: str, token: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    assert "shopflow_http_requests_total" in answer.text, f"{url}/metrics: no request counter"
    return dashboard.total(answer.text, "shopflow_http_requests_total")
