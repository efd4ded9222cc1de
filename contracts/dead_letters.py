"""Dead letters: messages that cannot be decoded or break the contract."""

from enum import StrEnum

from pydantic import Field

from contracts.common import UtcTimestamp, WireModel


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    TOO_LARGE = "too_large"
    KEY_MISMATCH = "key_mismatch"


class DeadLetter(WireModel):
    reason: DeadLetterReason
    error: str = Field(description="Human-readable explanation of what was wrong.")
    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(
        description="The original Kafka key (UTF-8, undecodable bytes replaced)."
    )
    payload_base64: str = Field(description="The original message value, byte for byte.")
    received_at: UtcTimestamp
