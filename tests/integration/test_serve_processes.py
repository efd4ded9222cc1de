"""Several `shopflow serve` processes on one port (SO_REUSEPORT): the kernel spreads new
connections across them, each process counts the requests that reached it
(`shopflow_http_requests_total`), scraped on a port of its own
(SHOPFLOW_HTTP_PROCESS_PORT); a port held by another socket refuses the start."""

import asyncio
import contextlib
import functools
import socket
import sys
from collections.abc import AsyncIterator

import httpx

from shopflow.queries.auth import SCOPE_METRICS
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.tokens import TokenSigner
from tests.support import dashboard
from tests.support.ports import free_port
from tests.support.scratch import service_env
from tests.support.waiting import until

SERVE = (sys.executable, "-m", "shopflow", "serve", "--no-consume", "--log-level", "warning")
CONNECTIONS = 40


def _env(settings: Settings, port: int, process_port: int) -> dict[str, str]:
    return service_env(
        settings,
        SHOPFLOW_HTTP_PORT=str(port),
        SHOPFLOW_HTTP_PROCESS_PORT=str(process_port),
        SHOPFLOW_DB_POOL_SIZE="4",  # per process
        SHOPFLOW_AUTH_PUBLIC_KEY_FILE=str(settings.auth_public_key_file),
    )


@contextlib.asynccontextmanager
async def _serving(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(*SERVE, env=env)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _live(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            return (await http.get("/health/live")).status_code == 200
    except httpx.TransportError:
        return False


async def _requests_counted(url: str, headers: dict[str, str]) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/metrics", headers=headers)
    answer.raise_for_status()
    return dashboard.total(answer.text, "shopflow_http_requests_total")


async def test_two_serve_processes_share_a_port_and_both_answer(
    shopflow_service: Runtime, shopflow_token: TokenSigner
) -> None:
    settings = shopflow_token.settings_for(shopflow_service.settings)
    shared, own = free_port(), [free_port(), free_port()]
    metrics = shopflow_token.headers(scopes=[SCOPE_METRICS])
    own_urls = [f"http://127.0.0.1:{port}" for port in own]
    async with _serving(_env(settings, shared, own[0])), _serving(_env(settings, shared, own[1])):
        for url in own_urls:
            await until(functools.partial(_live, url), 60, f"the serve process on {url} answers")
        before = [await _requests_counted(url, metrics) for url in own_urls]
        for _ in range(CONNECTIONS):  # each on a connection of its own
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{shared}") as http:
                assert (await http.get("/health/live")).status_code == 200
        after = [await _requests_counted(url, metrics) for url in own_urls]

    # Each process's count grew by the shared port's requests it took, and its scrape.
    taken = [a - b - 1 for a, b in zip(after, before, strict=True)]
    assert sum(taken) == CONNECTIONS
    assert min(taken) >= 1, taken  # all 40 to one of two: a chance of 2**-39


async def test_a_port_another_socket_holds_refuses_the_start(
    shopflow_service: Runtime, shopflow_token: TokenSigner
) -> None:
    settings = shopflow_token.settings_for(shopflow_service.settings)
    with socket.socket() as holder:  # no SO_REUSEPORT: not to be shared
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            *SERVE, env=_env(settings, taken, 0), stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken}" in stderr.decode()
