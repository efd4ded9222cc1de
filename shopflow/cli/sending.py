"""Sending commands and waiting for their results: the one implementation behind
`shopflow send`, the typed senders and `demo-data`.

Exit codes (`shopflow.ops.output`): 0 accepted, 1 rejected (the reason on stderr), 2 not
answered in time, not valid under the contract, or not deliverable.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shopflow.contracts.commands import Command
from shopflow.contracts.events import RejectionReason, ResultEvent
from shopflow.contracts.topics import Topics, is_rejection
from shopflow.kafka_access import OPS, MissingCredentials, kafka_connection, why_refused
from shopflow.ops.output import EXIT_NO, fail
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings


def validation_message(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"])
        problems.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    return " ".join(f"invalid {error.title}: {'; '.join(problems)}".split())


@contextlib.contextmanager
def contract_checked() -> Iterator[None]:
    """Turn a contract violation while building a command into a one-line error, exit 2."""
    try:
        yield
    except ValidationError as error:
        raise fail(validation_message(error)) from None


def rejection_line(event: ResultEvent) -> str:
    reason: RejectionReason = getattr(event, "reason")  # noqa: B009 (every *Rejected has one)
    product_id = getattr(event, "product_id", None)
    user_id = getattr(event, "user_id", None)
    if product_id is not None:
        return f"rejected: {reason.value} (product {product_id})"
    if user_id is not None:
        return f"rejected: {reason.value} (user {user_id})"
    return f"rejected: {reason.value}"


@contextlib.asynccontextmanager
async def connected(wait: bool) -> AsyncIterator[ShopflowClient]:
    settings = Settings()
    try:
        kafka = kafka_connection(settings, OPS)
    except MissingCredentials as error:
        raise fail(str(error)) from None
    client = ShopflowClient(kafka, topics=Topics(settings.topic_prefix), watch_results=wait)
    try:
        await client.start()
    except KafkaError as error:  # refused credentials, a topic it may not use, no broker
        await client.stop()
        raise fail(await why_refused(kafka, error)) from None
    except TimeoutError as error:
        await client.stop()
        raise fail(
            f"no answer from Kafka at {settings.kafka_bootstrap} or its topics "
            f"(is `make run` going?): {error!r}"
        ) from None
    try:
        yield client
    except KafkaError as error:  # a send refused: a topic this principal may not write
        raise fail(f"could not send: {await why_refused(kafka, error)}") from None
    finally:
        await client.stop()


async def collect(
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


def deliver(command: Command, *, wait: bool, timeout: float) -> None:
    """Send one command; unless told not to, wait for its result, print it and exit with
    0 (accepted), 1 (rejected, reason on stderr) or 2 (no result within `timeout`)."""

    async def main() -> ResultEvent | None:
        async with connected(wait) as client:
            await client.send(command)
            if not wait:
                return None
            [result] = await collect(client, [command], asyncio.get_running_loop().time() + timeout)
            return result

    try:
        event = asyncio.run(main())
    except KafkaError as error:
        raise fail(f"could not send {command.command_id}: {error!r}") from None
    if not wait:
        typer.echo(json.dumps({"sent": command.command_id}))
        return
    if event is None:
        raise fail(f"timeout: no result for command {command.command_id} within {timeout:g}s")
    typer.echo(event.model_dump_json(indent=2))
    if is_rejection(event):
        typer.echo(rejection_line(event), err=True)
        raise typer.Exit(EXIT_NO)
