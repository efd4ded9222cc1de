"""Dead letters: records that cannot be decoded, break the contract, or could not be
processed even alone (CONTRACT.md, "Dead letters")."""

import uuid
from enum import StrEnum
from typing import Final

from pydantic import Field

from shopflow.contracts.common import UtcTimestamp, WireModel

# Namespace of dead_letter_id: uuid5 of "<source_topic>/<partition>/<offset>". Fixed
# forever, so anyone can compute the id of a record's dead letter from its coordinates.
DEAD_LETTER_NAMESPACE: Final = uuid.UUID("3b0e9c52-7d2f-4c1a-8e61-5f4a9d0b2c77")

# A dead letter's `key` field carries at most this many characters of the source key;
# the whole key is kept with the payload (a key can be as large as the broker allows).
MAX_DEAD_LETTER_KEY_CHARS: Final = 1024

# Values up to this size are always carried whole (the service refuses to start when
# the dead-letter topic's limits would not allow it).
GUARANTEED_WHOLE_PAYLOAD_BYTES: Final = 256 * 1024


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    TOO_LARGE = "too_large"
    KEY_MISMATCH = "key_mismatch"
    PROCESSING_FAILED = "processing_failed"


def dead_letter_id(source_topic: str, partition: int, offset: int) -> uuid.UUID:
    """The id of a source record's dead letter: derived from its coordinates alone."""
    return uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{source_topic}/{partition}/{offset}")


class DeadLetter(WireModel):
    dead_letter_id: uuid.UUID = Field(
        description="uuid5 of '<source_topic>/<partition>/<offset>' in namespace "
        f"{DEAD_LETTER_NAMESPACE}: one per source record, the same on every redelivery."
    )
    reason: DeadLetterReason
    error: str = Field(
        description="What was wrong; for processing_failed, the error's class and message."
    )
    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(
        description="The original Kafka key (UTF-8, undecodable bytes replaced; at most "
        f"{MAX_DEAD_LETTER_KEY_CHARS} characters, the whole key is kept by the service)."
    )
    payload_base64: str = Field(
        description="The original value byte for byte, or its first bytes when "
        "payload_truncated (a tombstone's is empty)."
    )
    payload_size: int = Field(ge=0, description="Size in bytes of the whole original value.")
    payload_sha256: str = Field(
        description="Hex SHA-256 of the whole original value.",
        pattern=r"^[0-9a-f]{64}$",
    )
    payload_truncated: bool = Field(
        description="True when payload_base64 holds only a prefix; the service keeps the "
        "whole original and can show or replay it."
    )
    received_at: UtcTimestamp
