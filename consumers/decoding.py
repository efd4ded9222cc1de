"""From a Kafka record to a valid command, or to the reason it becomes a dead letter.

Pure functions: no I/O, so every way a message can be malformed is unit-tested. Checks
run in a fixed order and the first that fails decides the reason: no value or over the
size bound (`too_large`), then strict JSON (`invalid_json`), then the contract's
validation (`invalid_message`), then the key (`key_mismatch`). `decode_record` returns
for any bytes; an exception escaping it anyway is a bug, and the pipeline isolates the
record and dead-letters it as `processing_failed`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from shopflow.contracts import strict_json
from shopflow.contracts.commands import Command
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.limits import MAX_MESSAGE_BYTES
from shopflow.contracts.topics import CommandRoute
from shopflow.producers.dead_letters import SourceRecord


@dataclass(frozen=True)
class RawRecord:
    """A record made by hand (tests, tools): the parts of a Kafka record that the
    pipeline looks at (decoding all but the headers, which only tracing reads). The
    worker hands aiokafka's records over as they come; both are `SourceRecord`s."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass(frozen=True)
class DecodedCommand:
    route: CommandRoute
    command: Command
    entity_key: str
    payload_sha256: bytes

    @property
    def command_id(self) -> str:
        return self.command.command_id


@dataclass(frozen=True)
class Undeliverable:
    """A record that becomes a dead letter, and why."""

    record: SourceRecord
    reason: DeadLetterReason
    error: str


def decode_record(route: CommandRoute, record: SourceRecord) -> DecodedCommand | Undeliverable:
    def dead(reason: DeadLetterReason, error: str) -> Undeliverable:
        return Undeliverable(record, reason, error)

    value = record.value
    if value is None:
        return dead(DeadLetterReason.INVALID_JSON, "the message has no value (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        return dead(
            DeadLetterReason.TOO_LARGE,
            f"value is {len(value)} bytes; the contract allows {MAX_MESSAGE_BYTES}",
        )
    try:
        document = strict_json.loads(value)
    except strict_json.InvalidJson as exc:
        return dead(DeadLetterReason.INVALID_JSON, f"not strict UTF-8 JSON: {exc}")
    if not isinstance(document, dict):
        return dead(DeadLetterReason.INVALID_JSON, "the value is JSON but not an object")
    try:
        command: Command = route.command_type.model_validate(document)  # type: ignore[assignment]
    except ValidationError as exc:
        return dead(DeadLetterReason.INVALID_MESSAGE, _describe(exc, route))
    entity_key = str(route.entity_id(command))
    if record.key != entity_key.encode():
        shown = None if record.key is None else record.key[:100].decode("utf-8", "replace")
        return dead(
            DeadLetterReason.KEY_MISMATCH,
            f"Kafka key {shown!r} is not the command's {route.key_field} {entity_key!r}",
        )
    return DecodedCommand(route, command, entity_key, route.fingerprint(command))


def _describe(exc: ValidationError, route: CommandRoute) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])[:100] or '(message)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:10]
    )
    return f"not a valid {route.type_name}: {problems}"
