"""The commands that send commands: `send TOPIC JSON` and the typed senders."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, cast
from uuid import uuid4

import typer
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
from contracts.events import RejectionReason, ResultEvent
from contracts.topics import ROUTES_BY_TOPIC, Topics
from producers.client import ShopflowClient
from shopflow.settings import Settings

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)

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
