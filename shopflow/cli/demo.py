"""`shopflow demo-data`: a demo catalog and three funded users."""

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from shopflow.cli.sending import (
    collect,
    connected,
    rejection_line,
)
from shopflow.contracts.commands import ChargePoints, Command, RegisterUser, UpsertProduct
from shopflow.contracts.events import RejectionReason, ResultEvent, UserRejected
from shopflow.contracts.topics import is_rejection
from shopflow.ops.output import EXIT_DONE, EXIT_FAILED, EXIT_NO, fail

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)

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
    return not is_rejection(event)


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
        async with connected(True) as client:
            deadline = asyncio.get_running_loop().time() + timeout
            for commands in rounds:
                if any(result is None for _, result in answered):
                    answered += [(command, None) for command in commands]
                    continue
                for command in commands:
                    await client.send(command)
                answered += zip(commands, await collect(client, commands, deadline), strict=True)
        return answered

    try:
        answered = asyncio.run(main())
    except KafkaError as error:
        raise fail(f"could not send the demo data: {error!r}") from None
    code = EXIT_DONE
    for command, event in answered:
        if event is None:
            typer.echo(f"{command.command_id}: no result within {timeout:g}s", err=True)
            code = EXIT_FAILED
            continue
        typer.echo(_summary(event, started))
        if not _demo_ok(event):
            typer.echo(rejection_line(event), err=True)
            code = max(code, EXIT_NO)
    raise typer.Exit(code)
