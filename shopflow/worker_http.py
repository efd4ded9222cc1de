"""`shopflow worker`'s own HTTP side: GET /metrics, /health/live and /health/ready on
SHOPFLOW_HTTP_HOST:SHOPFLOW_WORKER_HTTP_PORT (8081), served by uvicorn in the worker's
event loop.

Choices:
- The routes are `queries.health`'s, the ones `shopflow serve` has beside its queries.
  Ready means the worker's consumers run and PostgreSQL answers: what a worker needs to
  apply commands. Redis (the sales view only) and Kafka (its consumers wait an outage
  out) are not in it; `serve`'s readiness has them.
- uvicorn in the worker's loop rather than prometheus_client's HTTP server thread: the
  lag gauge (`consumers.consumer_state`) reads the consumers' state, which belongs to
  the loop, and the readiness checks are coroutines on the runtime's engine.
- The socket is bound here, before uvicorn and before the consumers start: a port
  already taken (a second worker on the machine with the same setting) is a
  one-sentence refusal, not uvicorn's `sys.exit` out of a task of the loop, and with
  port 0 it gives the port to log.
- uvicorn does not capture signals: the worker owns SIGINT and SIGTERM and stops this
  server after its consumers, so during a long graceful stop a scrape still answers
  (and readiness says 503).
- No access log: probes and scrapes every few seconds would bury the consumers' log.
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
