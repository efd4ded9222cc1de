"""Every way a record can be malformed maps to one dead-letter reason (no I/O)."""

import json

import pytest

from shopflow.consumers.decoding import (
    DecodedCommand,
    RawRecord,
    Undeliverable,
    decode_record,
)
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.limits import MAX_MESSAGE_BYTES
from shopflow.contracts.topics import ROUTES_BY_TOPIC
from shopflow.domain.top_products import SaleKind

ROUTE = ROUTES_BY_TOPIC["shop.points.charge"]


def _record(value: bytes | None, key: bytes | None = b"7") -> RawRecord:
    return RawRecord("shop.points.charge", 2, 41, key, value)


def _charge(**fields: object) -> bytes:
    return json.dumps({"command_id": "c-1", "user_id": 7, "amount": 5, **fields}).encode()


def test_a_valid_record_decodes_to_its_command() -> None:
    decoded = decode_record(ROUTE, _record(_charge()))

    assert isinstance(decoded, DecodedCommand)
    assert decoded.command_id == "c-1"
    assert decoded.entity_key == "7"


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (None, b"7", DeadLetterReason.INVALID_JSON),
        (b"", b"7", DeadLetterReason.INVALID_JSON),
        (b"\xff\xfe", b"7", DeadLetterReason.INVALID_JSON),
        (b'"a string"', b"7", DeadLetterReason.INVALID_JSON),
        (_charge(amount=0), b"7", DeadLetterReason.INVALID_MESSAGE),
        (_charge(extra=1), b"7", DeadLetterReason.INVALID_MESSAGE),
        (_charge(pad="x" * MAX_MESSAGE_BYTES), b"7", DeadLetterReason.TOO_LARGE),
        (_charge(), b"8", DeadLetterReason.KEY_MISMATCH),
        (_charge(), b"07", DeadLetterReason.KEY_MISMATCH),
        (_charge(), None, DeadLetterReason.KEY_MISMATCH),
        (_charge(), b" 7", DeadLetterReason.KEY_MISMATCH),
        (_charge(), b"+7", DeadLetterReason.KEY_MISMATCH),
        (_charge(), b"\xff7", DeadLetterReason.KEY_MISMATCH),
        # Strict JSON (CONTRACT.md, "Envelope"): each of these is applied by json.loads.
        (_charge().decode().encode("utf-16"), b"7", DeadLetterReason.INVALID_JSON),
        (_charge().decode().encode("utf-16-le"), b"7", DeadLetterReason.INVALID_JSON),
        (_charge().decode().encode("utf-32"), b"7", DeadLetterReason.INVALID_JSON),
        (b"\xef\xbb\xbf" + _charge(), b"7", DeadLetterReason.INVALID_JSON),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": 5, "amount": 7}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": NaN}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": Infinity}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": -Infinity}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        # Deep nesting, huge numbers and lone surrogates never raise.
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            b"7",
            DeadLetterReason.TOO_LARGE,
        ),
        (
            b'{"amount": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (b'{"amount": ' + b"[" * 33 + b"]" * 33 + b"}", b"7", DeadLetterReason.INVALID_JSON),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": ' + b"9" * 60_000 + b"}",
            b"7",
            DeadLetterReason.INVALID_MESSAGE,
        ),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": 1e400}',
            b"7",
            DeadLetterReason.INVALID_MESSAGE,
        ),
        (
            b'{"command_id": "c-1", "user_id": 7, "amount": 5, "x": "\\ud800"}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"command_id": "c-1\xed\xa0\x80", "user_id": 7, "amount": 5}',
            b"7",
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"command_id": "c-1", "user_id": 18446744073709551616, "amount": 5}',
            b"7",
            DeadLetterReason.INVALID_MESSAGE,
        ),
    ],
)
def test_malformed_records_become_dead_letters_with_their_reason(
    value: bytes | None, key: bytes | None, reason: DeadLetterReason
) -> None:
    decoded = decode_record(ROUTE, _record(value, key))

    assert isinstance(decoded, Undeliverable)
    assert decoded.reason is reason
    assert decoded.error
    assert decoded.record == _record(value, key)


def test_a_message_of_exactly_the_limit_is_not_too_large() -> None:
    base = _charge(pad="")
    value = _charge(pad="x" * (MAX_MESSAGE_BYTES - len(base)))
    assert len(value) == MAX_MESSAGE_BYTES

    decoded = decode_record(ROUTE, _record(value))

    assert isinstance(decoded, Undeliverable)
    assert decoded.reason is DeadLetterReason.INVALID_MESSAGE  # pad is unknown


def test_fingerprint_ignores_spacing_and_field_order_but_not_values() -> None:
    a = decode_record(ROUTE, _record(b'{"command_id":"c-1","user_id":7,"amount":5}'))
    b = decode_record(ROUTE, _record(b'{ "amount": 5, "user_id": 7, "command_id": "c-1" }'))
    c = decode_record(ROUTE, _record(b'{"command_id":"c-1","user_id":7,"amount":6}'))

    assert isinstance(a, DecodedCommand)
    assert isinstance(b, DecodedCommand)
    assert isinstance(c, DecodedCommand)
    assert a.payload_sha256 == b.payload_sha256 != c.payload_sha256


def test_aggregator_reads_order_placed_and_skips_other_and_unreadable_records() -> None:
    from aiokafka import ConsumerRecord

    from shopflow.consumers.aggregator import sales_of

    placed = (
        b'{"event_id": "8f0e0d6c-1b7e-4c55-9a43-3e8e7f1d2c11", "type": "OrderPlaced",'
        b' "command_id": "o", "occurred_at": "2026-11-29T03:00:00Z", "user_id": 1,'
        b' "order_id": 5, "items": [{"product_id": 7, "quantity": 2, "unit_price": 10}],'
        b' "total": 20, "balance": 0}'
    )
    rejected = b'{"type": "OrderRejected", "reason": "out_of_stock"}'

    def record(value: bytes) -> "ConsumerRecord[bytes, bytes]":
        return ConsumerRecord("t", 0, 1, 0, 0, b"1", value, None, 1, len(value), ())

    from shopflow.consumers.aggregator import UNREADABLE_EVENTS

    unreadable = UNREADABLE_EVENTS._value.get()
    sales = sales_of([record(placed), record(rejected), record(b"{broken"), record(b"[]")])

    assert UNREADABLE_EVENTS._value.get() - unreadable == 1  # only the broken JSON
    assert len(sales) == 1
    assert sales[0].lines == ((7, 2),)
    assert (sales[0].kind, sales[0].order_id) == (SaleKind.PLACED, 5)


def test_an_escaped_surrogate_pair_is_one_character_and_valid() -> None:
    value = b'{"command_id": "r-1", "user_id": 7, "name": "A \\ud83d\\ude00"}'
    route = ROUTES_BY_TOPIC["shop.users.register"]

    decoded = decode_record(route, RawRecord("shop.users.register", 0, 1, b"7", value))

    assert isinstance(decoded, DecodedCommand)
    assert decoded.command.name == "A \U0001f600"  # type: ignore[union-attr]


def test_a_name_with_a_nul_character_is_invalid() -> None:
    value = b'{"command_id": "r-1", "user_id": 7, "name": "A\\u0000B"}'
    route = ROUTES_BY_TOPIC["shop.users.register"]

    decoded = decode_record(route, RawRecord("shop.users.register", 0, 1, b"7", value))

    assert isinstance(decoded, Undeliverable)
    assert decoded.reason is DeadLetterReason.INVALID_MESSAGE
