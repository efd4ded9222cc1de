"""The `shopflow` command line."""

import asyncio
import json
import logging
import signal
from typing import Annotated

import typer
import uvicorn

from contracts.topics import ROUTES_BY_TOPIC, Topics
from persistence.database import create_engine
from persistence.ledger import Ledger
from producers.client import ShopflowClient
from shopflow.app import create_app, prepare
from shopflow.asyncapi import asyncapi_json
from shopflow.runtime import Runtime
from shopflow.settings import Settings

app = typer.Typer(
    help="shopflow: Kafka commands applied to PostgreSQL exactly once.", no_args_is_help=True
)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


LogLevel = Annotated[str, typer.Option(help="Logging level.")]


@app.command()
def serve(
    consume: Annotated[bool, typer.Option(help="Run the command consumers.")] = True,
    log_level: LogLevel = "info",
) -> None:
    """Run the service in the foreground: consumers and the HTTP queries. Ctrl-C stops it."""
    _logging(log_level)
    settings = Settings()
    config = uvicorn.Config(
        create_app(settings, consume=consume),
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level,
        lifespan="on",
        log_config=None,
    )
    uvicorn.Server(config).run()


@app.command()
def worker(log_level: LogLevel = "info") -> None:
    """Run only the command consumers (no HTTP); SIGINT or SIGTERM stops it cleanly."""
    _logging(log_level)

    async def main() -> None:
        settings = Settings()
        runtime = Runtime.build(settings)
        await prepare(settings, runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        logging.getLogger("shopflow").info(
            "worker started; consuming from %s", settings.kafka_bootstrap
        )
        await stop.wait()
        await runtime.stop()

    asyncio.run(main())


@app.command()
def migrate(log_level: LogLevel = "info") -> None:
    """Create missing topics and apply the database migrations."""
    _logging(log_level)

    async def main() -> None:
        settings = Settings()
        runtime = Runtime.build(settings, consume=False)
        try:
            await prepare(settings, runtime)
        finally:
            await runtime.engine.dispose()
            await runtime.redis.aclose()

    asyncio.run(main())
    typer.echo("topics and schema are up to date")


@app.command()
def send(
    topic: Annotated[str, typer.Argument(help="Command topic, e.g. shop.points.charge.")],
    payload: Annotated[str, typer.Argument(help="The command as JSON.")],
    wait: Annotated[bool, typer.Option(help="Wait for the result event and print it.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 30.0,
) -> None:
    """Send one command (keyed by its entity id) and print its result event."""
    route = ROUTES_BY_TOPIC.get(topic)
    if route is None:
        raise typer.BadParameter(f"not a command topic; one of: {', '.join(ROUTES_BY_TOPIC)}")
    command = route.command_type.model_validate_json(payload)
    settings = Settings()

    async def main() -> None:
        async with ShopflowClient(
            settings.kafka_bootstrap, topics=Topics(settings.topic_prefix), watch_results=wait
        ) as client:
            if wait:
                event = await client.send_and_wait(command, timeout=timeout)  # type: ignore[arg-type]
                typer.echo(event.model_dump_json(indent=2))
            else:
                await client.send(command)  # type: ignore[arg-type]
                typer.echo(json.dumps({"sent": command.command_id}))  # type: ignore[attr-defined]

    asyncio.run(main())


@app.command("purge-ledger")
def purge_ledger(log_level: LogLevel = "info") -> None:
    """Forget command_ids older than SHOPFLOW_LEDGER_RETENTION_DAYS (at least 7)."""
    _logging(log_level)
    settings = Settings()

    async def main() -> int:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                return await Ledger(connection).purge_older_than_days(
                    settings.ledger_retention_days
                )
        finally:
            await engine.dispose()

    removed = asyncio.run(main())
    typer.echo(f"forgot {removed} command ids older than {settings.ledger_retention_days} days")


@app.command()
def asyncapi(
    out: Annotated[str, typer.Option(help="Write to this file instead of stdout.")] = "",
) -> None:
    """Print (or write) the AsyncAPI document of the wire contract."""
    document = asyncapi_json()
    if out:
        with open(out, "w", encoding="utf-8") as file:
            file.write(document)
    else:
        typer.echo(document, nl=False)


def main() -> None:
    app()
