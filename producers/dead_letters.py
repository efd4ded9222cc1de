"""Building a dead letter that always fits its topic.

A dead letter carries the original value base64-encoded, a third larger than the value
itself, so a value the broker accepted (up to about 1 MiB) can make a dead letter the
producer or the dead-letter topic refuses. `build_dead_letter` sizes it against the
limits in force (`max_value_bytes`: the smaller of the producer's `max_request_size` and
the topic's `max.message.bytes`, less the record's overhead): whole when it fits, else
the longest prefix that fits, with `payload_truncated`, and `payload_size` and
`payload_sha256` of the whole original (which the service keeps in PostgreSQL).
"""

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from shopflow.contracts.dead_letters import (
    GUARANTEED_WHOLE_PAYLOAD_BYTES,
    MAX_DEAD_LETTER_KEY_CHARS,
    DeadLetter,
    DeadLetterReason,
    dead_letter_id,
)

# Room for what a record adds around its key and value: the record and batch headers
# (about 80 bytes in the v2 format) and our content-type header, with a wide margin.
RECORD_OVERHEAD_BYTES: Final = 1024
MAX_ERROR_CHARS: Final = 1000


class DeadLetterTopicTooSmall(RuntimeError):
    pass


def dead_letter_room(producer_max_request_size: int, topic_max_message_bytes: int) -> int:
    """The largest dead-letter value (key included) that both limits let through.

    Raises `DeadLetterTopicTooSmall` when that could not carry a value of
    `GUARANTEED_WHOLE_PAYLOAD_BYTES` whole, as the contract promises."""
    room = min(producer_max_request_size, topic_max_message_bytes) - RECORD_OVERHEAD_BYTES
    needed = _encoded_size_of_whole(GUARANTEED_WHOLE_PAYLOAD_BYTES)
    if room < needed:
        raise DeadLetterTopicTooSmall(
            f"dead letters may be at most {room} bytes here (producer max_request_size "
            f"{producer_max_request_size}, topic max.message.bytes {topic_max_message_bytes}); "
            f"carrying a {GUARANTEED_WHOLE_PAYLOAD_BYTES}-byte value whole needs {needed}: "
            "raise the dead-letter topic's max.message.bytes "
            "(and SHOPFLOW_PRODUCER_MAX_REQUEST_SIZE)"
        )
    return room


def _encoded_size_of_whole(payload_size: int) -> int:
    # base64 of the payload, a maximal key and error, and the other fields' JSON.
    return 4 * ((payload_size + 2) // 3) + 6 * (MAX_DEAD_LETTER_KEY_CHARS + MAX_ERROR_CHARS) + 600


class SourceRecord(Protocol):
    """Where a record came from, its bytes, and its headers (a dead letter keeps none of
    them; a trace context is read from them, `consumers.tracing`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def _printable(text: str) -> str:
    # An error can quote the input (a field's name, say): U+0000 and lone surrogates
    # cannot be stored in PostgreSQL text nor encoded as UTF-8, so they are replaced.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class BuiltDeadLetter:
    letter: DeadLetter
    kafka_key: bytes | None
    value: bytes  # the serialized letter, as published


def dead_letter_key(source_key: bytes | None) -> bytes | None:
    """Dead letters are keyed like their source record (so one entity's stay in order),
    unless that key is too long to repeat."""
    if source_key is not None and len(source_key) > MAX_DEAD_LETTER_KEY_CHARS:
        return None
    return source_key


def build_dead_letter(
    record: SourceRecord,
    reason: DeadLetterReason,
    error: str,
    received_at: datetime,
    *,
    max_value_bytes: int,
    with_payload: bool = True,
) -> BuiltDeadLetter:
    """The dead letter of `record`, at most `max_value_bytes` with its key; without any of
    the payload's bytes when `with_payload` is false (the last resort when a sized letter
    was refused anyway)."""
    payload = record.value or b""
    kafka_key = dead_letter_key(record.key)
    room = max_value_bytes - (len(kafka_key) if kafka_key else 0)
    shown_key = None if record.key is None else record.key.decode("utf-8", "replace")

    def letter(kept: bytes) -> DeadLetter:
        return DeadLetter(
            dead_letter_id=dead_letter_id(record.topic, record.partition, record.offset),
            reason=reason,
            error=_printable(error[:MAX_ERROR_CHARS]),
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=None if shown_key is None else shown_key[:MAX_DEAD_LETTER_KEY_CHARS],
            payload_base64=base64.b64encode(kept).decode("ascii"),
            payload_size=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload_truncated=len(kept) < len(payload),
            received_at=received_at,
        )

    if with_payload:
        whole = letter(payload)
        value = whole.model_dump_json().encode()
        if len(value) <= room:
            return BuiltDeadLetter(whole, kafka_key, value)
    else:
        empty = letter(b"")
        return BuiltDeadLetter(empty, kafka_key, empty.model_dump_json().encode())
    envelope = len(letter(b"").model_dump_json().encode())
    # Every 3 bytes kept cost 4 of base64: keep as many as the room left allows.
    kept_bytes = max(0, (room - envelope) // 4 * 3)
    cut = letter(payload[:kept_bytes])
    value = cut.model_dump_json().encode()
    assert len(value) <= room, (len(value), room)
    return BuiltDeadLetter(cut, kafka_key, value)


@dataclass
class DeadLetterLimits:
    """The room for one dead letter, as the limits in force allow: the runtime sets it at
    start from the producer's max_request_size and the topic's max.message.bytes."""

    max_value_bytes: int = dead_letter_room(1024 * 1024, 1024 * 1024 + 12)  # Kafka defaults
