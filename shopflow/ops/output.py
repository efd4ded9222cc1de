"""What every `shopflow` command shares: the exit codes and `fail`, the consoles, ISO
times as options, and servers that cannot be reached turned into one line and exit 2."""

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from shopflow.kafka_access import MissingCredentials, why_refused
from shopflow.producers.kafka_connection import KafkaConnection

# The exit codes of every command: 0 done (a command sent was accepted); 1 the answer is
# "no" (a command rejected, a dead letter not found, a topic missing); 2 it could not be
# done (a server unreachable, a message not valid under the contract, no answer in time,
# a selection refused).
EXIT_DONE: Final = 0
EXIT_NO: Final = 1
EXIT_FAILED: Final = 2

# Wide enough for a table of dead letters when the output is a pipe or a file (rich
# uses 80 columns when it cannot ask the terminal), so that lines are not folded for grep.
PIPE_WIDTH: Final = 200


def stdout() -> Console:
    """Tables for people. No highlighting (numbers and ids in colours, for nothing)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, PIPE_WIDTH)
    return console


def stderr() -> Console:
    """Progress bars and notes, kept out of the output a script reads."""
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def iso_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-03T08:00:00Z`, `2026-12-03T09:00+01:00`, `2026-12-03`);
    without an offset it is taken as UTC, as every time shopflow records is."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-12-03T08:00:00Z"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@contextlib.contextmanager
def servers_reached(what: str, kafka: KafkaConnection | None = None) -> Iterator[None]:
    """Kafka or PostgreSQL unreachable (or refusing) as one line on stderr, exit 2. With
    `kafka`, the connection the command used, a Kafka refusal says why (a refused
    password, a topic or group the principal may not use: `why_refused`)."""
    try:
        yield
    except MissingCredentials as error:
        raise fail(f"could not {what}: {error}") from None
    except KafkaError as error:
        if kafka is None:
            raise fail(f"could not {what}: {_detail(error)}") from None
        raise fail(f"could not {what}: {asyncio.run(why_refused(kafka, error))}") from None
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        raise fail(f"could not {what}: {_detail(error)}") from None


def _detail(error: BaseException) -> str:
    said = str(error)
    named = said if said.startswith(type(error).__name__) else f"{type(error).__name__}: {said}"
    return " ".join(named.split())[:300]
