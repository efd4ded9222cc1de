"""`shopflow worker`'s own HTTP side: GET /metrics, /health/live and /health/ready on
SHOPFLOW_HTTP_HOST:SHOPFLOW_WORKER_HTTP_PORT, the routes of `queries.health`, served by
uvicorn in the worker's event loop (the lag gauge and the readiness checks belong to
it). Ready means the consumers run and PostgreSQL answers. The socket is bound before
the consumers start, so a taken port is a one-sentence refusal; uvicorn captures no
signal (the worker stops it after its consumers, so a scrape still answers meanwhile)
and logs no access (probes every few seconds would bury the consumers' log).
"""

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from shopflow.kafka_admin import StartRefused
from shopflow.queries.health import create_health_app
from shopflow.runtime import Runtime

# How long the server's stop waits for a request being answered (a scrape takes
# milliseconds; the readiness checks time out after 2 s).
SHUTDOWN_TIMEOUT_S = 5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker handles SIGINT and SIGTERM itself (shopflow.cli.processes.worker);
        # uvicorn's handlers would replace its handlers, then raise the signal again at exit.
        yield


def create_worker_http_app(runtime: Runtime) -> FastAPI:
    return create_health_app(
        "shopflow worker",
        {"consumers": runtime.consumers_ready, "postgresql": runtime.database_ready},
    )


def _listening(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        # socket.create_server's own message repeats the address; the errno's is enough.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise StartRefused(
            f"cannot serve the worker's metrics and health on {host}:{port}: {reason}; "
            "each worker on a machine needs its own SHOPFLOW_WORKER_HTTP_PORT"
        ) from None


@contextlib.asynccontextmanager
async def serving_worker_http(runtime: Runtime) -> AsyncIterator[str]:
    """Serve the worker's HTTP side until the block ends; yields its address
    (`http://host:port`, the port the system chose when the setting is 0)."""
    settings = runtime.settings
    listening = _listening(settings.http_host, settings.worker_http_port)
    host, port = listening.getsockname()[:2]
    address = f"[{host}]:{port}" if listening.family == socket.AF_INET6 else f"{host}:{port}"
    config = uvicorn.Config(
        create_worker_http_app(runtime),
        lifespan="off",  # the worker starts and stops the runtime itself
        log_config=None,  # its loggers go to the worker's root handler (shopflow.logs)
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
    )
    server = _Server(config)
    # The socket listens already: connections made before uvicorn takes it wait in its
    # backlog and are answered.
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield f"http://{address}"
    finally:
        server.should_exit = True
        await serving
