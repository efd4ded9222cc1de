"""What a command comes to: its outcome, and the result event that says so, serialized
once and ready to publish. Every outcome of the consumers is made here."""

import uuid
from dataclasses import dataclass
from enum import StrEnum

from shopflow.consumers.decoding import DecodedCommand
from shopflow.contracts.events import RejectionReason, ResultEvent
from shopflow.domain.clock import Clock

# Namespace of the deterministic ids of conflict answers (same conflicting command, same id).
_CONFLICT_NAMESPACE = uuid.UUID("6f1d2a43-5c1e-4d0b-9a57-2b8f0e3c9d11")


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Outcome:
    """The result of one command, serialized and ready to publish."""

    command_id: str
    kind: OutcomeKind
    result_topic: str  # the contract's topic name; the publisher applies any prefix
    key: str
    event_id: uuid.UUID
    value: bytes
    # Why a command was refused (rejected, conflict, unavailable), for the log; None when
    # accepted, and for a replay (its stored answer is republished as it was, unread).
    reason: RejectionReason | None = None


def outcome(cmd: DecodedCommand, kind: OutcomeKind, event: ResultEvent) -> Outcome:
    return Outcome(
        command_id=cmd.command_id,
        kind=kind,
        result_topic=cmd.route.result_topic,
        key=cmd.entity_key,
        event_id=event.event_id,
        value=event.model_dump_json().encode(),
        reason=getattr(event, "reason", None),  # every rejection event has one
    )


def replayed(cmd: DecodedCommand, answer: Outcome) -> Outcome:
    """`answer` again, as the answer to `cmd`, a repeat of the command that got it."""
    return Outcome(
        cmd.command_id,
        OutcomeKind.REPLAYED,
        answer.result_topic,
        answer.key,
        answer.event_id,
        answer.value,
    )


def conflict(cmd: DecodedCommand, clock: Clock) -> Outcome:
    # Deterministic id: a redelivery of the conflicting command repeats the same answer.
    event_id = uuid.uuid5(_CONFLICT_NAMESPACE, f"{cmd.command_id}/{cmd.payload_sha256.hex()}")
    event = cmd.route.rejection(
        cmd.command,
        RejectionReason.IDEMPOTENCY_CONFLICT,
        event_id=event_id,
        command_id=cmd.command_id,
        occurred_at=clock(),
    )
    return outcome(cmd, OutcomeKind.CONFLICT, event)


def unavailable(cmd: DecodedCommand, clock: Clock) -> Outcome:
    event = cmd.route.rejection(
        cmd.command,
        RejectionReason.TEMPORARILY_UNAVAILABLE,
        event_id=uuid.uuid4(),
        command_id=cmd.command_id,
        occurred_at=clock(),
    )
    return outcome(cmd, OutcomeKind.UNAVAILABLE, event)
