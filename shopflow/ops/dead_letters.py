"""Dead letters for operators: listing, showing one whole, replaying.

They are read from PostgreSQL (`dead_letters`, `persistence.dead_letter_store`), not from
the `shop.dead-letters` topic. The table is the system of record (docs/design.md, "Dead
letters"): each letter is recorded in its batch's transaction and published from what
was recorded; the table holds each source record once, with its whole key and value
(the topic's copy is cut to fit a message), and is filtered by reason, topic and time
with an index rather than by reading the topic from its beginning.
"""

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shopflow.contracts.topics import Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.dead_letter_reader import (
    DeadLetterFilter,
    DeadLetterReader,
    RecordedDeadLetter,
)
from shopflow.persistence.dead_letter_store import DeadLetterStore, KeptRecord
from shopflow.producers.client import ShopflowClient
from shopflow.producers.dead_letters import RECORD_OVERHEAD_BYTES
from shopflow.settings import Settings

SHORT_KEY_CHARS = 24
SHORT_ERROR_CHARS = 80


def counted(count: int) -> str:
    return f"{count} dead letter" if count == 1 else f"{count} dead letters"


def source_topics(settings: Settings, given: Sequence[str]) -> list[str]:
    """The deployed names `--topic` may mean: as given (a deployed name), and the
    contract's name behind SHOPFLOW_TOPIC_PREFIX, so `shop.points.charge` finds a
    prefixed deployment's letters too. Letters record the deployed name."""
    topics = Topics(settings.topic_prefix)
    return sorted({name for topic in given for name in (topic, topics.name(topic))})


async def find(
    settings: Settings, which: DeadLetterFilter, *, latest: int | None = None
) -> list[RecordedDeadLetter]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await DeadLetterReader(connection).find(which, latest=latest)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class WholeDeadLetter:
    letter: RecordedDeadLetter
    kept: KeptRecord  # the whole original key and value


async def find_one(settings: Settings, dead_letter_id: UUID) -> WholeDeadLetter | None:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            found = await DeadLetterReader(connection).find(DeadLetterFilter(ids=[dead_letter_id]))
            kept = await DeadLetterStore(connection).kept_record(dead_letter_id)
    finally:
        await engine.dispose()
    if not found or kept is None:
        return None
    return WholeDeadLetter(found[0], kept)


def _text(data: bytes | None) -> str | None:
    # As the published letter shows a key: UTF-8, undecodable bytes replaced.
    return None if data is None else data.decode("utf-8", "replace")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def as_json(letter: RecordedDeadLetter) -> dict[str, Any]:
    """The contract's fields of the letter (but `payload_base64`), the whole key as text."""
    return {
        "dead_letter_id": str(letter.dead_letter_id),
        "reason": letter.reason,
        "error": letter.error,
        "source_topic": letter.source_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": _text(letter.key),
        "payload_size": letter.payload_size,
        "payload_sha256": letter.payload_sha256,
        "payload_truncated": letter.payload_truncated,
        "received_at": letter.received_at.isoformat(),
    }


def whole_as_json(whole: WholeDeadLetter) -> dict[str, Any]:
    """`as_json`, with the whole original key and value in base64 (`value_base64` is
    null for a tombstone). `payload_truncated` says whether the published letter was cut;
    `value_base64` is whole either way."""
    return {
        **as_json(whole.letter),
        "key_base64": _b64(whole.kept.key),
        "value_base64": _b64(whole.kept.value),
    }


def _visible(text: str) -> str:
    """Text for a cell: control characters (an escape sequence in a hostile key, say)
    written as escapes, so that they show rather than act on the operator's terminal
    (rich drops only a few of them)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _short(text: str | None, limit: int) -> str:
    if text is None:
        return "(none)"
    text = _visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(letter: RecordedDeadLetter) -> str:
    return f"{letter.source_topic}[{letter.partition}]@{letter.offset}"


def _size(letter: RecordedDeadLetter) -> str:
    return f"{letter.payload_size} (cut)" if letter.payload_truncated else str(letter.payload_size)


def table(letters: Sequence[RecordedDeadLetter], *, title: str | None = None) -> Table:
    """One line per letter. Text() throughout: keys and errors may hold `[...]`, which
    rich would otherwise read as markup."""
    shown = Table(title=title, title_justify="left")
    shown.add_column("dead_letter_id", no_wrap=True, min_width=36)
    shown.add_column("received_at (UTC)", no_wrap=True)
    shown.add_column("reason", no_wrap=True)
    shown.add_column(Text("source topic[partition]@offset"), overflow="fold")
    shown.add_column("key", overflow="fold")
    shown.add_column("bytes", justify="right", no_wrap=True)
    shown.add_column("error", overflow="fold")
    for letter in letters:
        shown.add_row(
            Text(str(letter.dead_letter_id)),
            Text(letter.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")),
            Text(letter.reason),
            Text(_visible(_where(letter))),
            Text(_short(_text(letter.key), SHORT_KEY_CHARS)),
            Text(_size(letter)),
            Text(_short(letter.error, SHORT_ERROR_CHARS)),
        )
    return shown


def _printable(text: str) -> bool:
    # Control characters (an escape sequence in a hostile record, say) would act on the
    # operator's terminal rather than show, and rich drops some of them: such bytes are
    # shown in base64 instead, so what is printed is always the bytes.
    return all(ch.isprintable() or ch in "\n\t" for ch in text)


def _bytes_block(label: str, data: bytes | None) -> tuple[str, str]:
    """A heading and the bytes in full: as text when they are printable UTF-8, else in
    base64."""
    if data is None:
        return f"{label}: none (a tombstone)" if label == "value" else f"{label}: none", ""
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return f"{label} ({len(data)} bytes, UTF-8):", text
    why = "not UTF-8" if text is None else "control characters"
    return f"{label} ({len(data)} bytes, {why}; in base64):", _b64(data) or ""


def show(console: Console, whole: WholeDeadLetter) -> None:
    """The letter's fields, then its whole original key and value, byte for byte."""
    letter, kept = whole.letter, whole.kept
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    matches = hashlib.sha256(kept.value or b"").hexdigest() == letter.payload_sha256
    published = (
        "cut to a prefix (payload_truncated); the whole value is below"
        if letter.payload_truncated
        else "whole"
    )
    for name, value in (
        ("dead_letter_id", str(letter.dead_letter_id)),
        ("reason", letter.reason),
        ("error", _visible(letter.error)),
        ("source", _visible(_where(letter))),
        ("received_at", letter.received_at.isoformat()),
        ("payload_size", str(letter.payload_size)),
        ("payload_sha256", letter.payload_sha256 + ("" if matches else "  (DOES NOT MATCH)")),
        ("published value", published),
    ):
        fields.add_row(Text(name), Text(value))
    console.print(fields)
    # The bytes go out unwrapped and unstyled (soft wrap, no markup), so that they can be
    # copied whole; `--value-out` writes them to a file exactly.
    for label, data in (("key", kept.key), ("value", kept.value)):
        heading, body = _bytes_block(label, data)
        console.print(Text(heading, style="bold"))
        if body:
            console.print(Text(body), soft_wrap=True, markup=False, highlight=False)


def replay_room(settings: Settings, letters: Sequence[RecordedDeadLetter]) -> int:
    """The producer's max_request_size for a replay: the service's, or more for a record
    that needs it. The broker accepted each record once on that topic, so it is the
    broker's limit, not this client's, that should decide (a record kept whole can be
    larger than what the service's producer is set up to send)."""
    largest = max((len(letter.key or b"") + letter.payload_size for letter in letters), default=0)
    return max(settings.producer_max_request_size, largest + RECORD_OVERHEAD_BYTES)


def replay_order(letters: Sequence[RecordedDeadLetter]) -> list[RecordedDeadLetter]:
    """Source order: per topic and partition by offset, so that one key's records go back
    in the order they first came (a partition's commands apply in offset order)."""
    return sorted(letters, key=lambda d: (d.source_topic, d.partition, d.offset))


async def replay(
    settings: Settings,
    letters: Sequence[RecordedDeadLetter],
    sent: Callable[[RecordedDeadLetter], None],
) -> int:
    """Send each letter's whole original key and value back to its source topic, in the
    order given, one at a time, each acknowledged by Kafka before the next; `sent` is
    called after each. The key decides the partition, as for any command (the source
    partition if the topic's partition count has not changed since). Returns how many
    were sent; raises on the first failure (those before it were sent)."""
    engine = create_engine(settings.database_url, pool_size=1)
    count = 0
    try:
        async with (
            engine.connect() as connection,
            ShopflowClient(
                kafka_connection(settings, OPS),
                watch_results=False,
                max_request_size=replay_room(settings, letters),
            ) as client,
        ):
            store = DeadLetterStore(connection)
            for letter in letters:
                # Read one at a time: thousands of values of up to a MiB are never held.
                kept = await store.kept_record(letter.dead_letter_id)
                if kept is None:
                    raise LookupError(f"dead letter {letter.dead_letter_id} is gone")
                await client.send_raw(letter.source_topic, kept.key, kept.value)
                count += 1
                sent(letter)
    finally:
        await engine.dispose()
    return count
