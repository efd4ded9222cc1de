"""Property tests of decoding and dead-letter sizing against hostile input (no I/O):
every hostile record gets its reason, nothing raises, and every dead letter fits."""

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopflow.consumers.decoding import DecodedCommand, RawRecord, Undeliverable, decode_record
from shopflow.contracts.dead_letters import (
    GUARANTEED_WHOLE_PAYLOAD_BYTES,
    DeadLetter,
    DeadLetterReason,
    dead_letter_id,
)
from shopflow.contracts.topics import COMMAND_ROUTES, ROUTES_BY_TOPIC, CommandRoute
from shopflow.producers.dead_letters import DeadLetterLimits, build_dead_letter
from tests.support.hostile import Hostile, hostile_charges, schema_documents

pytestmark = pytest.mark.property

ROUTE = ROUTES_BY_TOPIC["shop.points.charge"]
NOW = datetime(2026, 12, 2, tzinfo=UTC)
ROOM = DeadLetterLimits().max_value_bytes
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(max_examples=600, deadline=None, suppress_health_check=_SLOW)
@given(st.integers(min_value=1, max_value=2**63 - 1).flatmap(hostile_charges))
def test_every_hostile_record_is_dead_lettered_with_its_reason(hostile: Hostile) -> None:
    record = RawRecord(ROUTE.topic, 4, 1234, hostile.key, hostile.value)

    decoded = decode_record(ROUTE, record)

    assert isinstance(decoded, Undeliverable), hostile.kind
    assert decoded.reason is hostile.reason, (hostile.kind, decoded.error)
    built = build_dead_letter(record, decoded.reason, decoded.error, NOW, max_value_bytes=ROOM)
    _assert_describes(built.letter, record)
    assert len(built.value) + len(built.kafka_key or b"") <= ROOM
    # Storable as PostgreSQL text, whatever the input quoted into it.
    assert "\x00" not in built.letter.error
    built.letter.error.encode("utf-8")


def _assert_describes(letter: DeadLetter, record: RawRecord) -> None:
    value = record.value or b""
    kept = base64.b64decode(letter.payload_base64)
    assert letter.dead_letter_id == dead_letter_id(record.topic, record.partition, record.offset)
    assert letter.payload_size == len(value)
    assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    if letter.payload_truncated:
        assert len(value) > GUARANTEED_WHOLE_PAYLOAD_BYTES
        assert 0 < len(kept) < len(value)
        assert value.startswith(kept)
    else:
        assert kept == value


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=30)), value=st.one_of(st.none(), st.binary()))
def test_decoding_returns_for_any_bytes(key: bytes | None, value: bytes | None) -> None:
    decoded = decode_record(ROUTE, RawRecord(ROUTE.topic, 0, 0, key, value))

    assert isinstance(decoded, DecodedCommand | Undeliverable)


@pytest.mark.parametrize("route", COMMAND_ROUTES, ids=lambda r: r.type_name)
@settings(max_examples=60, deadline=None, suppress_health_check=_SLOW)
@given(data=st.data())
def test_documents_from_the_contracts_json_schema_decode_or_are_refused_as_invalid(
    route: CommandRoute, data: st.DataObject
) -> None:
    document = data.draw(schema_documents(route.command_type))
    value = json.dumps(document).encode()
    key = str(document[route.key_field]).encode()

    decoded = decode_record(route, RawRecord(route.topic, 0, 0, key, value))

    # The schema cannot say everything (an order's distinct product ids, items or
    # from_cart): what it lets through either decodes or is an invalid message.
    if isinstance(decoded, Undeliverable):
        assert decoded.reason is DeadLetterReason.INVALID_MESSAGE, decoded.error
    else:
        given = {name: v for name, v in document.items() if v is not None}  # null = absent
        assert decoded.command.model_dump(mode="json", exclude_none=True) == given


@settings(max_examples=200, deadline=None, suppress_health_check=_SLOW)
@given(
    size=st.one_of(
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=GUARANTEED_WHOLE_PAYLOAD_BYTES - 10, max_value=1024 * 1024),
    ),
    key_size=st.one_of(st.none(), st.integers(min_value=0, max_value=5000)),
    room=st.integers(min_value=ROOM // 2, max_value=ROOM),
)
def test_a_dead_letter_fits_its_room_and_is_whole_when_it_can_be(
    size: int, key_size: int | None, room: int
) -> None:
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    key = None if key_size is None else b"\xff" * key_size
    record = RawRecord("t", 1, 2, key, value)

    built = build_dead_letter(record, DeadLetterReason.TOO_LARGE, "x", NOW, max_value_bytes=room)

    assert len(built.value) + len(built.kafka_key or b"") <= room
    assert DeadLetter.model_validate_json(built.value) == built.letter
    _assert_describes(built.letter, record)
    if built.letter.payload_truncated:  # cut no shorter than the room forces
        assert len(built.value) + len(built.kafka_key or b"") > room - 4 * 3 - 4
