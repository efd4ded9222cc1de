"""The commands that run shopflow's processes: `serve`, `worker` and `migrate`."""

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn
import uvloop
from aiokafka.errors import KafkaError

from shopflow.app import check_token_keys, create_app, prepare
from shopflow.cli.logs import LogLevel
from shopflow.kafka_access import SERVICE, MissingCredentials, kafka_connection, why_refused
from shopflow.kafka_admin import StartRefused
from shopflow.logs import configure_logging
from shopflow.runtime import Consumers, Runtime
from shopflow.settings import Settings
from shopflow.slow_stop import reporting_a_slow_stop
from shopflow.tracing import configure_tracing
from shopflow.worker_http import serving_worker_http

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)


def tune_garbage_collector(settings: Settings) -> None:
    """A long-running process's collector: what is there now (modules, the runtime) is
    frozen out of collections, and young objects are collected less often
    (`SHOPFLOW_GC_THRESHOLD`). Reference counting frees nearly everything a batch makes;
    the collector only finds cycles."""
    if settings.gc_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, older, oldest)


@contextlib.contextmanager
def _refusing_to_start() -> Iterator[None]:
    """A set-up the service will not run on (topics with too few partitions, a session
    timeout the brokers refuse, a right its principal lacks, credentials Kafka refuses or
    that nothing gives): its one sentence on stderr and exit 1, not a stack trace."""
    try:
        yield
    except (StartRefused, MissingCredentials) as error:
        typer.echo(f"shopflow refuses to start: {error}", err=True)
        raise typer.Exit(1) from None
    except KafkaError as error:
        kafka = kafka_connection(Settings(), SERVICE)
        typer.echo(f"shopflow refuses to start: {asyncio.run(why_refused(kafka, error))}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    consume: Annotated[bool, typer.Option(help="Run the command consumers.")] = True,
    log_level: LogLevel = "info",
) -> None:
    """Run the service in the foreground: consumers and the HTTP queries. Ctrl-C stops it."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)
    # Prepared before uvicorn starts rather than in the app's lifespan: uvicorn reports a
    # lifespan failure as a stack trace, and a refusal should read as one line.
    with _refusing_to_start():
        # First, as it touches nothing: no token keys configured is a refusal too
        # (shopflow.app.token_key_source).
        app = create_app(
            settings,
            consume=consume,
            prepare_first=False,
            tracer_provider=configure_tracing(settings, "shopflow"),
        )
        asyncio.run(check_token_keys(settings))
        asyncio.run(prepare(settings))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level,
        lifespan="on",
        timeout_keep_alive=settings.http_keep_alive_s,
        # uvicorn's own logging configuration would replace shopflow's handler on its
        # loggers; without it they propagate to the root handler (shopflow.logs).
        log_config=None,
    )
    sockets = [_listening(settings.http_host, settings.http_port, shared=True)]
    if settings.http_process_port:
        sockets.append(_listening(settings.http_host, settings.http_process_port, shared=False))
    tune_garbage_collector(settings)
    uvicorn.Server(config).run(sockets=sockets)


def _listening(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening socket on (host, port); `shared`: SO_REUSEPORT, so that several serve
    processes take SHOPFLOW_HTTP_PORT together and the kernel spreads new connections
    across them (by a hash of each connection's addresses). Linux lets only sockets of
    the same user share a port, so no other user's process can take a share of it. A port
    taken by anything else refuses the start, as uvicorn's own bind would."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        typer.echo(f"shopflow refuses to start: cannot listen on {host}:{port}: {error}", err=True)
        raise typer.Exit(1) from None
    return listening


# A stop may take the graceful timeout (a batch in flight) and then some (the consumers
# leaving their groups); past that, the worker logs what it still waits for.
SLOW_STOP_MARGIN_S = 5.0


@app.command()
def worker(
    consumers: Annotated[
        Consumers,
        typer.Option(
            help="Which consumers: the commands and the sales aggregator (all), or one "
            "of them, the other in a worker of its own."
        ),
    ] = Consumers.ALL,
    log_level: LogLevel = "info",
) -> None:
    """Run only the consumers (commands and the sales aggregator), with GET /metrics,
    /health/live and /health/ready on SHOPFLOW_WORKER_HTTP_PORT (8081; one port per
    worker on a machine). SIGINT or SIGTERM stops it cleanly."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)
    tracer_provider = configure_tracing(settings, "shopflow-worker")

    async def main() -> None:
        runtime = Runtime.build(settings, consumers=consumers, tracer_provider=tracer_provider)
        await prepare(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # HTTP first: a taken port refuses the start before any group is joined, and
        # readiness says 503 until the consumers run. It stops after them, so a long
        # graceful stop can still be scraped.
        async with serving_worker_http(runtime) as address:
            await runtime.start()
            tune_garbage_collector(settings)
            logging.getLogger("shopflow").info(
                "worker started; consuming from %s; metrics and health on %s",
                settings.kafka_bootstrap,
                address,
            )
            await stop.wait()
            async with reporting_a_slow_stop(settings.graceful_timeout_s + SLOW_STOP_MARGIN_S):
                await runtime.stop()

    # uvloop: the worker is event-loop bound (sockets to Kafka and PostgreSQL, many small
    # callbacks), and uvloop runs that loop in C. `serve` gets it from uvicorn.
    with _refusing_to_start():
        uvloop.run(main())


@app.command()
def migrate(log_level: LogLevel = "info") -> None:
    """Check the topics and the service's Kafka rights, and apply the database migrations.

    The topics are made beforehand by `shopflow topics create`, as the Kafka admin."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)
    with _refusing_to_start():
        asyncio.run(prepare(settings))
    typer.echo("topics and rights checked, schema up to date")
