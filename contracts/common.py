"""Field types shared by commands and events."""

import functools
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from shopflow.contracts.limits import (
    COMMAND_ID_PATTERN,
    MAX_COMMAND_ID_LENGTH,
    MAX_ENTITY_ID,
    MAX_QUANTITY,
)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset")
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _rfc3339(value: datetime) -> str:
    # Always UTC with a "Z" and microseconds, so equal instants serialize to equal bytes.
    # Memoised: a batch's result events share one `occurred_at`, and strftime is slow.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


CommandId = Annotated[
    str,
    Field(
        pattern=COMMAND_ID_PATTERN,
        min_length=1,
        max_length=MAX_COMMAND_ID_LENGTH,
        description="Idempotency key chosen by the sender: 1-64 characters of [A-Za-z0-9._:-], "
        "unique across all command types for at least 7 days.",
        examples=["charge-2f1c9a7e"],
    ),
]
UserId = Annotated[
    int,
    Field(ge=1, le=MAX_ENTITY_ID, description="User id, a positive 63-bit integer.", examples=[42]),
]
ProductId = Annotated[
    int,
    Field(
        ge=1, le=MAX_ENTITY_ID, description="Product id, a positive 63-bit integer.", examples=[7]
    ),
]
OrderId = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_ENTITY_ID,
        description="Order id, as `OrderPlaced` gave it: a positive 63-bit integer.",
        examples=[1001],
    ),
]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, description="Units, 1-1,000.", examples=[2])]
UtcTimestamp = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
    Field(description="RFC 3339 timestamp in UTC.", examples=["2026-11-29T12:00:00.000000Z"]),
]


class WireModel(BaseModel):
    """Base of every message: strict types (JSON integers stay integers), no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
