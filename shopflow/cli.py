"""The `shopflow` command line."""

import asyncio
import contextlib
import gc
import json
import logging
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, cast
from uuid import uuid4

import typer
import uvicorn
import uvloop
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from contracts.events import RejectionReason, ResultEvent, UserRejected
from contracts.topics import ROUTES_BY_TOPIC, Topics
from persistence.database import create_engine
from persistence.ledger import Ledger
from persistence.reconciliation import describe, find_violations
from producers.client import ShopflowClient
from shopflow.app import create_app, prepare
from shopflow.asyncapi import asyncapi_json
from shopflow.kafka_admin import StartRefused
from shopflow.logs import configure_logging
from shopflow.ops.cli import register as register_operator_commands
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.slow_stop import reporting_a_slow_stop
from shopflow.tracing import configure_tracing
from shopflow.worker_http import serving_worker_http

app = typer.Typer(
    help="shopflow: Kafka commands applied to PostgreSQL exactly once.", no_args_is_help=True
)


LogLevel = Annotated[
    str,
    typer.Option(
        help="Logging level (debug shows every command's line). The format is "
        "SHOPFLOW_LOG_FORMAT's: JSON lines unless stderr is a terminal."
    ),
]


def _tune_garbage_collector(settings: Settings) -> None:
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
    timeout the brokers refuse): its one sentence on stderr and exit 1, not a stack
    trace."""
    try:
        yield
    except StartRefused as error:
        typer.echo(f"shopflow refuses to start: {error}", err=True)
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
        asyncio.run(prepare(settings))
    config = uvicorn.Config(
        create_app(
            settings,
            consume=consume,
            prepare_first=False,
            tracer_provider=configure_tracing(settings, "shopflow"),
        ),
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level,
        lifespan="on",
        # uvicorn's own logging configuration would replace shopflow's handler on its
        # loggers; without it they propagate to the root handler (shopflow.logs).
        log_config=None,
    )
    _tune_garbage_collector(settings)
    uvicorn.Server(config).run()


# A stop may take the graceful timeout (a batch in flight) and then some (the consumers
# leaving their groups); past that, the worker logs what it still waits for.
SLOW_STOP_MARGIN_S = 5.0


@app.command()
def worker(log_level: LogLevel = "info") -> None:
    """Run only the consumers (commands and the sales aggregator), with GET /metrics,
    /health/live and /health/ready on SHOPFLOW_WORKER_HTTP_PORT (8081; one port per
    worker on a machine). SIGINT or SIGTERM stops it cleanly."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)
    tracer_provider = configure_tracing(settings, "shopflow-worker")

    async def main() -> None:
        runtime = Runtime.build(settings, tracer_provider=tracer_provider)
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
            _tune_garbage_collector(settings)
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
    """Create missing topics and apply the database migrations."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)
    with _refusing_to_start():
        asyncio.run(prepare(settings))
    typer.echo("topics and schema are up to date")


# --- Sending commands -------------------------------------------------------------------
#
# Exit codes of every command-sending command: 0 accepted, 1 rejected (the reason on
# stderr), 2 not answered in time, not valid under the contract, or not deliverable.

EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_FAILED = 2

Wait = Annotated[bool, typer.Option(help="Wait for the result event and print it.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the result.")]
CommandIdOption = Annotated[
    str | None,
    typer.Option(help="The idempotency key; reuse it to resend.", show_default="cli-<random hex>"),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_FAILED)


def _validation_message(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"])
        problems.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    return " ".join(f"invalid {error.title}: {'; '.join(problems)}".split())


@contextlib.contextmanager
def _contract_checked() -> Iterator[None]:
    """Turn a contract violation while building a command into a one-line error, exit 2."""
    try:
        yield
    except ValidationError as error:
        raise _fail(_validation_message(error)) from None


def _command_id(given: str | None) -> str:
    return given or f"cli-{uuid4().hex}"


def _is_rejection(event: ResultEvent) -> bool:
    return type(event).__name__.endswith("Rejected")


def _rejection_line(event: ResultEvent) -> str:
    reason: RejectionReason = getattr(event, "reason")  # noqa: B009 (every *Rejected has one)
    product_id = getattr(event, "product_id", None)
    user_id = getattr(event, "user_id", None)
    if product_id is not None:
        return f"rejected: {reason.value} (product {product_id})"
    if user_id is not None:
        return f"rejected: {reason.value} (user {user_id})"
    return f"rejected: {reason.value}"


@contextlib.asynccontextmanager
async def _connected(wait: bool) -> AsyncIterator[ShopflowClient]:
    settings = Settings()
    client = ShopflowClient(
        settings.kafka_bootstrap, topics=Topics(settings.topic_prefix), watch_results=wait
    )
    try:
        await client.start()
    except (KafkaError, TimeoutError) as error:
        await client.stop()
        raise _fail(
            f"cannot reach Kafka at {settings.kafka_bootstrap} or its topics "
            f"(is `make run` going?): {error!r}"
        ) from None
    try:
        yield client
    finally:
        await client.stop()


async def _collect(
    client: ShopflowClient, commands: Sequence[Command], deadline: float
) -> list[ResultEvent | None]:
    """The result of each command, or None for those not answered before `deadline`."""
    loop = asyncio.get_running_loop()
    results: list[ResultEvent | None] = []
    for command in commands:
        seen = client.results(command.command_id)
        if seen:
            results.append(seen[0])
            continue
        try:
            results.append(
                await client.wait_for_result(
                    command.command_id, timeout=max(0.01, deadline - loop.time())
                )
            )
        except TimeoutError:
            results.append(None)
    return results


def _deliver(command: Command, *, wait: bool, timeout: float) -> None:
    """Send one command; unless told not to, wait for its result, print it and exit with
    0 (accepted), 1 (rejected, reason on stderr) or 2 (no result within `timeout`)."""

    async def main() -> ResultEvent | None:
        async with _connected(wait) as client:
            await client.send(command)
            if not wait:
                return None
            [result] = await _collect(
                client, [command], asyncio.get_running_loop().time() + timeout
            )
            return result

    try:
        event = asyncio.run(main())
    except KafkaError as error:
        raise _fail(f"could not send {command.command_id}: {error!r}") from None
    if not wait:
        typer.echo(json.dumps({"sent": command.command_id}))
        return
    if event is None:
        raise _fail(f"timeout: no result for command {command.command_id} within {timeout:g}s")
    typer.echo(event.model_dump_json(indent=2))
    if _is_rejection(event):
        typer.echo(_rejection_line(event), err=True)
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def send(
    topic: Annotated[str, typer.Argument(help="Command topic, e.g. shop.points.charge.")],
    payload: Annotated[str, typer.Argument(help="The command as JSON.")],
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Send one command as raw JSON (keyed by its entity id) and print its result event."""
    route = ROUTES_BY_TOPIC.get(topic)
    if route is None:
        raise typer.BadParameter(f"not a command topic; one of: {', '.join(ROUTES_BY_TOPIC)}")
    with _contract_checked():
        command = cast(Command, route.command_type.model_validate_json(payload))
    _deliver(command, wait=wait, timeout=timeout)


@app.command("register-user")
def register_user(
    user_id: int,
    name: str,
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """RegisterUser: create a user with a zero point balance."""
    with _contract_checked():
        command = RegisterUser(command_id=_command_id(command_id), user_id=user_id, name=name)
    _deliver(command, wait=wait, timeout=timeout)


@app.command("upsert-product")
def upsert_product(
    product_id: int,
    name: str,
    price: Annotated[int, typer.Argument(help="Unit price in whole points.")],
    stock_added: Annotated[int, typer.Option(help="Units added to the stock.")] = 0,
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """UpsertProduct: create a product or change its name and price; add to its stock."""
    with _contract_checked():
        command = UpsertProduct(
            command_id=_command_id(command_id),
            product_id=product_id,
            name=name,
            price=price,
            stock_added=stock_added,
        )
    _deliver(command, wait=wait, timeout=timeout)


@app.command()
def charge(
    user_id: int,
    amount: Annotated[int, typer.Argument(help="Points to add.")],
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """ChargePoints: add points to a user's balance."""
    with _contract_checked():
        command = ChargePoints(command_id=_command_id(command_id), user_id=user_id, amount=amount)
    _deliver(command, wait=wait, timeout=timeout)


@app.command("add-to-cart")
def add_to_cart(
    user_id: int,
    product_id: int,
    quantity: int,
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """AddCartItem: put units of a product in the user's cart."""
    with _contract_checked():
        command = AddCartItem(
            command_id=_command_id(command_id),
            user_id=user_id,
            product_id=product_id,
            quantity=quantity,
        )
    _deliver(command, wait=wait, timeout=timeout)


@app.command("remove-from-cart")
def remove_from_cart(
    user_id: int,
    product_id: int,
    quantity: int,
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """RemoveCartItem: take units of a product out of the user's cart."""
    with _contract_checked():
        command = RemoveCartItem(
            command_id=_command_id(command_id),
            user_id=user_id,
            product_id=product_id,
            quantity=quantity,
        )
    _deliver(command, wait=wait, timeout=timeout)


def _order_line(item: str) -> OrderLine:
    product_id, colon, quantity = item.partition(":")
    try:
        if not colon:
            raise ValueError(item)
        return OrderLine(product_id=int(product_id), quantity=int(quantity))
    except ValidationError as error:
        raise _fail(f"--item {item}: {_validation_message(error)}") from None
    except ValueError:
        raise _fail(f"--item {item!r}: expected PRODUCT_ID:QUANTITY, e.g. 7:2") from None


@app.command("place-order")
def place_order(
    user_id: int,
    item: Annotated[
        list[str] | None,
        typer.Option(
            "--item", metavar="PRODUCT_ID:QUANTITY", help="An order line; repeat for more."
        ),
    ] = None,
    from_cart: Annotated[
        bool, typer.Option("--from-cart", help="Order what the user's cart holds.")
    ] = False,
    command_id: CommandIdOption = None,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """PlaceOrder: order explicit --item lines, or with --from-cart the cart's contents."""
    if bool(item) == from_cart:
        raise _fail("give either --item PRODUCT_ID:QUANTITY (repeatable) or --from-cart")
    lines = [_order_line(each) for each in item] if item else None
    with _contract_checked():
        command = PlaceOrder(
            command_id=_command_id(command_id),
            user_id=user_id,
            items=lines,
            from_cart=True if from_cart else None,
        )
    _deliver(command, wait=wait, timeout=timeout)


# --- Demo data -------------------------------------------------------------------------

DEMO_PRODUCTS = (
    (1, "Keyboard", 4_500, 20),
    (2, "Mouse", 2_500, 50),
    (3, "Monitor", 32_000, 8),
    (4, "USB-C cable", 900, 40),
    (5, "Headphones", 12_000, 15),
    (6, "Webcam", 6_500, 10),
    (7, "Laptop stand", 3_800, 25),
    (8, "Desk lamp", 5_200, 5),
)
DEMO_USERS = ((1, "Alice"), (2, "Bob"), (3, "Carol"))
DEMO_CHARGE = 100_000


def demo_commands() -> list[list[Command]]:
    """The demo data as two rounds: the catalog and the users, then the charges (which
    must find their users registered). Command ids are fixed, so a rerun is replayed."""
    first: list[Command] = [
        UpsertProduct(
            command_id=f"demo-product-{product_id}",
            product_id=product_id,
            name=name,
            price=price,
            stock_added=stock,
        )
        for product_id, name, price, stock in DEMO_PRODUCTS
    ]
    first += [
        RegisterUser(command_id=f"demo-user-{user_id}", user_id=user_id, name=name)
        for user_id, name in DEMO_USERS
    ]
    second: list[Command] = [
        ChargePoints(command_id=f"demo-charge-{user_id}", user_id=user_id, amount=DEMO_CHARGE)
        for user_id, _ in DEMO_USERS
    ]
    return [first, second]


def _summary(event: ResultEvent, started: datetime) -> str:
    fields = event.model_dump(
        mode="json", exclude={"event_id", "type", "command_id", "occurred_at"}
    )
    described = " ".join(f"{name}={json.dumps(value)}" for name, value in fields.items())
    replayed = " (replayed)" if event.occurred_at < started else ""
    return f"{event.command_id}: {event.type} {described}{replayed}"


def _demo_ok(event: ResultEvent) -> bool:
    # A user registered before under another command id is as good as registered now.
    if isinstance(event, UserRejected):
        return event.reason is RejectionReason.USER_EXISTS
    return not _is_rejection(event)


@app.command("demo-data")
def demo_data(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all results.")] = 60.0,
) -> None:
    """Load a demo catalog (products 1-8) and users 1-3 with 100,000 points each.

    Safe to run again: the command ids are fixed, so a rerun applies nothing twice."""
    rounds = demo_commands()
    started = datetime.now(UTC)

    async def main() -> list[tuple[Command, ResultEvent | None]]:
        answered: list[tuple[Command, ResultEvent | None]] = []
        async with _connected(True) as client:
            deadline = asyncio.get_running_loop().time() + timeout
            for commands in rounds:
                if any(result is None for _, result in answered):
                    answered += [(command, None) for command in commands]
                    continue
                for command in commands:
                    await client.send(command)
                answered += zip(commands, await _collect(client, commands, deadline), strict=True)
        return answered

    try:
        answered = asyncio.run(main())
    except KafkaError as error:
        raise _fail(f"could not send the demo data: {error!r}") from None
    code = EXIT_ACCEPTED
    for command, event in answered:
        if event is None:
            typer.echo(f"{command.command_id}: no result within {timeout:g}s", err=True)
            code = EXIT_FAILED
            continue
        typer.echo(_summary(event, started))
        if not _demo_ok(event):
            typer.echo(_rejection_line(event), err=True)
            code = max(code, EXIT_REJECTED)
    raise typer.Exit(code)


@app.command("rebuild-top")
def rebuild_top(log_level: LogLevel = "info") -> None:
    """Rebuild the Redis top-products view from PostgreSQL's order lines."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)

    async def main() -> bool:
        runtime = Runtime.build(settings, consume=False)
        try:
            return await runtime.rebuild_sales_view()
        finally:
            await runtime.redis.aclose()
            await runtime.engine.dispose()

    if not asyncio.run(main()):
        typer.echo("another rebuild is running; try again when it is done", err=True)
        raise typer.Exit(1)
    typer.echo("the top-products view is rebuilt")


@app.command("purge-ledger")
def purge_ledger(log_level: LogLevel = "info") -> None:
    """Forget command_ids older than SHOPFLOW_LEDGER_RETENTION_DAYS (at least 7)."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)

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
def check(
    limit: Annotated[int, typer.Option(help="At most this many violations per rule.")] = 20,
) -> None:
    """Check the database's invariants (balances, stock, carts, orders); exit 1 if any fails."""
    settings = Settings()

    async def main() -> str | None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            violations = await find_violations(engine, limit_per_rule=limit)
        finally:
            await engine.dispose()
        return describe(violations) if violations else None

    report = asyncio.run(main())
    if report is not None:
        typer.echo(report)
        raise typer.Exit(1)
    typer.echo("all invariants hold")


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


register_operator_commands(app)  # dead-letters, topics, lag, config


def main() -> None:
    app()
