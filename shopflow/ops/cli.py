"""The operator commands of `shopflow`: `dead-letters list|show|replay`, `topics
create|describe`, `lag`, `config`, `orders` and `statement`. `register(app)` adds them
to the main CLI."""

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.kafka_access import ADMIN, OPS, MissingCredentials, kafka_connection
from shopflow.kafka_admin import StartRefused
from shopflow.kafka_lag import MissingTopics, consumer_lag
from shopflow.ops import config as config_ops
from shopflow.ops import dead_letters as letters_ops
from shopflow.ops import history as history_ops
from shopflow.ops import lag as lag_ops
from shopflow.ops import topics as topics_ops
from shopflow.ops.access import provision
from shopflow.ops.output import (
    EXIT_NO,
    fail,
    iso_time,
    print_json,
    servers_reached,
    stderr,
    stdout,
)
from shopflow.persistence.dead_letter_reader import DeadLetterFilter, RecordedDeadLetter
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.queries.history import PAGE_DEFAULT, PAGE_MAX, Unknown
from shopflow.settings import Settings

Command = TypeVar("Command", bound=Callable[..., Any])


def _prose(doc: str | None) -> str:
    """A docstring as help text, each paragraph on one line: typer's rich help keeps the
    line breaks of the paragraphs after the first, which then read as ragged lines."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def command(app: typer.Typer, name: str) -> Callable[[Command], Command]:
    """`app.command(name)`, with the docstring as `_prose` help."""

    def registered(function: Command) -> Command:
        app.command(name, help=_prose(function.__doc__))(function)
        return function

    return registered


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _kafka(settings: Settings, principal: str) -> KafkaConnection:
    """How this command connects to Kafka (`kafka_connection`); exit 2 when nothing gives
    the principal's password."""
    try:
        return kafka_connection(settings, principal)
    except MissingCredentials as error:
        raise fail(str(error)) from None


# --- dead-letters -----------------------------------------------------------------------

dead_letters_app = typer.Typer(
    help="List, show and replay dead letters (the records the service could not apply).\n\n"
    "They are read from PostgreSQL (table dead_letters): the system of record, which keeps "
    "each one once with its whole original key and value; the shop.dead-letters topic "
    "carries copies, cut past about 785,000 bytes.",
    no_args_is_help=True,
)

Reasons = Annotated[
    list[DeadLetterReason] | None,
    typer.Option("--reason", help="Only dead letters with this reason; repeat for more."),
]
SourceTopics = Annotated[
    list[str] | None,
    typer.Option(
        "--topic",
        metavar="TOPIC",
        help="Only dead letters of this source topic (the contract's name, e.g. "
        "shop.points.charge, or the deployed one with its SHOPFLOW_TOPIC_PREFIX); repeat "
        "for more.",
    ),
]
Since = Annotated[
    datetime | None,
    typer.Option(
        metavar="ISO-TIME",
        parser=iso_time,
        help="Only dead letters received at or after this ISO 8601 time "
        "(e.g. 2026-12-03T08:00:00Z; UTC when no offset is given).",
    ),
]
Until = Annotated[
    datetime | None,
    typer.Option(
        metavar="ISO-TIME",
        parser=iso_time,
        help="Only dead letters received before this ISO 8601 time (UTC if no offset).",
    ),
]


def _selection(
    settings: Settings,
    *,
    ids: list[UUID] | None = None,
    reasons: list[DeadLetterReason] | None,
    topics: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        ids=ids or (),
        reasons=[reason.value for reason in reasons or ()],
        source_topics=letters_ops.source_topics(settings, topics or ()),
        since=since,
        until=until,
    )


@command(dead_letters_app, "list")
def list_dead_letters(
    reason: Reasons = None,
    topic: SourceTopics = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show at most the latest this many; 0 for all.")
    ] = 200,
    as_json: AsJson = False,
) -> None:
    """List dead letters, oldest first, filtered by reason, source topic and time.

    A table (id, time, reason, source record, key, size, error) or, with --json, one
    object per letter with the contract's fields but the payload (`shopflow dead-letters
    show ID` has the bytes)."""
    settings = Settings()
    which = _selection(settings, reasons=reason, topics=topic, since=since, until=until)
    with servers_reached("read the dead letters from PostgreSQL"):
        found = asyncio.run(letters_ops.find(settings, which, latest=limit + 1 if limit else None))
    more = bool(limit) and len(found) > limit
    if more:
        found = found[1:]
    if as_json:
        print_json([letters_ops.as_json(letter) for letter in found])
    elif found:
        stdout().print(letters_ops.table(found))
    else:
        typer.echo("no dead letters match")
    if more:
        stderr().print(f"more dead letters match: these are the latest {limit} (see --limit)")


@command(dead_letters_app, "show")
def show_dead_letter(
    dead_letter_id: Annotated[UUID, typer.Argument(metavar="ID", help="The dead letter's id.")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: the letter's fields, with the whole original key and value "
            "base64-encoded (key_base64, value_base64).",
        ),
    ] = False,
    value_out: Annotated[
        Path | None,
        typer.Option(
            help="Also write the whole original value, byte for byte, to this file (empty "
            "for a tombstone).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Show one dead letter in full, with its whole original key and value.

    The value is whole even when the letter published on the topic carried only a
    prefix of it (payload_truncated); it is printed as text when it is UTF-8, else in
    base64. Exit 1 if there is no such dead letter."""
    settings = Settings()
    with servers_reached("read the dead letter from PostgreSQL"):
        whole = asyncio.run(letters_ops.find_one(settings, dead_letter_id))
    if whole is None:
        raise fail(f"no dead letter {dead_letter_id}", EXIT_NO)
    if value_out is not None:
        value_out.write_bytes(whole.kept.value or b"")
    if as_json:
        print_json(letters_ops.whole_as_json(whole))
    else:
        letters_ops.show(stdout(), whole)


@command(dead_letters_app, "replay")
def replay_dead_letters(
    ids: Annotated[
        list[UUID] | None,
        typer.Argument(
            metavar="[ID]...", help="The dead letters to replay (or choose them by the filters)."
        ),
    ] = None,
    reason: Reasons = None,
    topic: SourceTopics = None,
    since: Since = None,
    until: Until = None,
    replay_all: Annotated[
        bool,
        typer.Option("--all", help="Replay every dead letter (when no id or filter is given)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")
    ] = False,
) -> None:
    """Send dead letters back to their source topic, with their original key and value.

    The key and value are the whole original ones, even when the published letter was
    cut; letters go back in their original order per partition. Prints how many were
    sent; --dry-run prints what would be sent and sends nothing.

    Safe to repeat: the service's idempotency ledger answers a command_id it has already
    applied with the result it gave the first time (same event_id) and applies nothing
    again. A record that is still bad when it comes back is dead-lettered again, as a new
    dead letter (its new offset gives it a new id): replay after the fix, not before.

    Given ids and filters, the ids must also match the filters; exit 1, sending nothing,
    if an id is not found among them."""
    settings = Settings()
    which = _selection(settings, ids=ids, reasons=reason, topics=topic, since=since, until=until)
    if which.is_empty and not replay_all:
        raise fail(
            "choose the dead letters to replay: give their ids, a filter (--reason, --topic, "
            "--since, --until), or --all"
        )
    with servers_reached("read the dead letters from PostgreSQL"):
        chosen = letters_ops.replay_order(asyncio.run(letters_ops.find(settings, which)))
    missing = sorted(set(ids or ()) - {letter.dead_letter_id for letter in chosen}, key=str)
    if missing:
        matching = " matching the filters" if any((reason, topic, since, until)) else ""
        raise fail(
            f"no dead letter {', '.join(map(str, missing))}{matching}; nothing sent",
            EXIT_NO,
        )
    if dry_run:
        if chosen:
            stdout().print(
                letters_ops.table(chosen, title="would be sent back to their source topic")
            )
        typer.echo(f"dry run: would send back {letters_ops.counted(len(chosen))}; nothing sent")
        return
    sent = _replay_with_progress(settings, chosen)
    typer.echo(f"sent back: {letters_ops.counted(sent)}")


def _replay_with_progress(settings: Settings, chosen: list[RecordedDeadLetter]) -> int:
    done = 0
    try:
        with (
            servers_reached("replay the dead letters", _kafka(settings, OPS)),
            Progress(
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr(),
            ) as progress,
        ):
            task = progress.add_task("replay", total=len(chosen))

            def sent(_: RecordedDeadLetter) -> None:
                nonlocal done
                done += 1
                progress.advance(task)

            try:
                return asyncio.run(letters_ops.replay(settings, chosen, sent))
            except BaseException:
                typer.echo(f"sent {done} of {len(chosen)} before the failure", err=True)
                raise
    except LookupError as error:  # a letter deleted meanwhile
        raise fail(str(error)) from None


# --- topics -----------------------------------------------------------------------------

topics_app = typer.Typer(
    help="Create or describe the service's Kafka topics (commands, events, dead letters).",
    no_args_is_help=True,
)


@command(topics_app, "create")
def create_topics() -> None:
    """Provision Kafka for the service, as an admin principal: the missing topics and the
    ACLs of CONTRACT.md's Access table on them (and, on the local servers, a SCRAM user
    for each of its principals).

    Runs as SHOPFLOW_KAFKA_USERNAME, or as the local servers' `admin`. Partition counts
    from SHOPFLOW_COMMAND_PARTITIONS, SHOPFLOW_EVENT_PARTITIONS and
    SHOPFLOW_DEAD_LETTER_PARTITIONS, SHOPFLOW_REPLICATION_FACTOR replicas, the dead-letter
    topic's max.message.bytes. Idempotent. Exit 1 if an existing topic has fewer
    partitions than configured."""
    settings = Settings()
    kafka = _kafka(settings, ADMIN)
    try:
        with servers_reached(f"provision the topics on {settings.kafka_bootstrap}", kafka):
            result = asyncio.run(topics_ops.create(settings, kafka))
            access = asyncio.run(
                provision(settings, kafka, local_users=settings.kafka_username is None)
            )
    except StartRefused as error:
        raise fail(str(error), EXIT_NO) from None
    for name in result.created:
        typer.echo(f"created {name}")
    typer.echo(f"{len(result.created)} topics created, {len(result.existing)} were there already")
    if access.users:
        typer.echo(f"SCRAM users of the local servers: {', '.join(access.users)}")
    typer.echo(f"{access.acls} ACLs in force")
    if access.removed:
        typer.echo(f"{access.removed} ACLs beyond the contract's table removed from its topics")


@command(topics_app, "describe")
def describe_topics(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also each partition: leader, replicas, in-sync replicas, first and end offsets.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON (every partition's details included)."),
    ] = False,
) -> None:
    """Describe the service's topics: partitions, replication factor, end offsets.

    Per topic as the brokers have it: its partitions (and how many the settings ask
    for), its replication factor and its partitions' end offsets summed; --verbose adds
    each partition. Exit 1 if a topic is missing (`shopflow topics create` creates it)."""
    settings = Settings()
    kafka = _kafka(settings, ADMIN)
    with servers_reached(f"describe the topics on {settings.kafka_bootstrap}", kafka):
        states = asyncio.run(topics_ops.describe(settings, kafka))
    if as_json:
        print_json([topics_ops.as_json(state) for state in states])
    else:
        stdout().print(topics_ops.table(states, verbose=verbose))
    missing = [state.topic for state in states if state.partitions is None]
    if missing:
        raise fail(
            f"missing: {', '.join(missing)} (`shopflow topics create` creates them)",
            EXIT_NO,
        )


# --- lag and config ---------------------------------------------------------------------


def lag(as_json: AsJson = False) -> None:
    """Consumer lag of the service's groups: committed offset, end offset, lag.

    One group per command topic, and the sales aggregator's; per partition the
    committed offset, the end offset and the lag (records still to read), then each
    group's totals. A partition with no committed offset counts from its first record."""
    settings = Settings()
    kafka = _kafka(settings, OPS)
    try:
        with servers_reached(f"read the consumer groups on {settings.kafka_bootstrap}", kafka):
            groups = lag_ops.by_group(asyncio.run(consumer_lag(settings, kafka)))
    except MissingTopics as error:
        raise fail(f"{error} (`shopflow topics create` creates them)", EXIT_NO) from None
    if as_json:
        print_json(lag_ops.as_json(groups))
    else:
        stdout().print(lag_ops.table(groups))


def config(as_json: AsJson = False) -> None:
    """Print the effective settings, with passwords and other secrets masked.

    Every SHOPFLOW_* setting, whether it comes from the environment or is the default."""
    shown = config_ops.effective(Settings())
    if as_json:
        print_json({setting.name: setting.value for setting in shown})
    else:
        stdout().print(config_ops.table(shown))


# --- a user's history -------------------------------------------------------------------

UserId = Annotated[int, typer.Argument(min=1, help="The user's id.")]
PageLimit = Annotated[
    int, typer.Option("--limit", min=1, max=PAGE_MAX, help="How many rows, newest first.")
]
PageBefore = Annotated[
    int | None,
    typer.Option("--before", min=1, help="Start below this id (the caption's, for more)."),
]


Answer = TypeVar("Answer", bound=BaseModel)


def _show(
    answer: Answer | Unknown, user_id: int, table: Callable[[Answer], Table], *, as_json: bool
) -> None:
    """A history page as JSON or a table; exit 1 when the user is unknown."""
    if isinstance(answer, Unknown):
        raise fail(f"{answer.value}: user {user_id}", EXIT_NO)
    if as_json:
        print_json(answer.model_dump(mode="json"))
    else:
        stdout().print(table(answer))


def orders(
    user_id: UserId,
    limit: PageLimit = PAGE_DEFAULT,
    before: PageBefore = None,
    as_json: AsJson = False,
) -> None:
    """A user's orders, newest first, as GET /users/{id}/orders answers them.

    Each order's status, total and lines, with the product names as they were ordered.
    Exit 1 if the user is not registered."""
    with servers_reached("read the orders from PostgreSQL"):
        answer = asyncio.run(history_ops.orders(Settings(), user_id, limit=limit, before=before))
    _show(answer, user_id, history_ops.orders_table, as_json=as_json)


def statement(
    user_id: UserId,
    limit: PageLimit = PAGE_DEFAULT,
    before: PageBefore = None,
    as_json: AsJson = False,
) -> None:
    """A user's points statement, newest first, as GET /users/{id}/points/transactions
    answers it.

    Each charge and use, signed, with the balance after it and the order it paid for.
    Exit 1 if the user is not registered."""
    with servers_reached("read the statement from PostgreSQL"):
        answer = asyncio.run(history_ops.statement(Settings(), user_id, limit=limit, before=before))
    _show(answer, user_id, history_ops.statement_table, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the operator commands to the `shopflow` CLI."""
    app.add_typer(dead_letters_app, name="dead-letters")
    app.add_typer(topics_app, name="topics")
    command(app, "lag")(lag)
    command(app, "config")(config)
    command(app, "orders")(orders)
    command(app, "statement")(statement)
