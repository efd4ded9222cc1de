"""Hostile records for `shop.points.charge`, each with the dead-letter reason it must get.

A hypothesis strategy, shared by the fast property test of decoding (no servers) and the
integration test that sends the records to the real service. Each record is built from a
valid `ChargePoints` (or a document generated from the contract's own JSON Schema by
hypothesis-jsonschema) by one mutation whose reason is certain by construction, following
the order in which decoding checks (consumers.decoding): size first (`too_large`), then
strict JSON (`invalid_json`), then validation (`invalid_message`), then the key
(`key_mismatch`). Large values are drawn as a size and filled deterministically, so that
hypothesis stays fast while values reach the broker's limit.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, cast

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import BaseModel

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.contracts.limits import COMMAND_ID_PATTERN, MAX_CHARGE_AMOUNT, MAX_MESSAGE_BYTES
from shopflow.contracts.strict_json import MAX_DEPTH

# The largest value the test client can send: the broker takes a record batch of up to
# 1 MiB + 12 bytes (max.message.bytes), which leaves this much for the value.
BROKER_VALUE_LIMIT = 1024 * 1024 - 256

FIELDS = tuple(ChargePoints.model_fields)


@dataclass(frozen=True)
class Hostile:
    """A record that must become a dead letter, and why."""

    kind: str
    key: bytes | None
    value: bytes | None
    reason: DeadLetterReason


def _valid_document(command_id: str, user_id: int, amount: int) -> dict[str, Any]:
    return {"command_id": command_id, "user_id": user_id, "amount": amount}


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


_command_ids = st.from_regex(COMMAND_ID_PATTERN, fullmatch=True)
_bad_command_ids = st.one_of(
    st.just(""),
    st.text(min_size=65, max_size=80, alphabet="abc"),
    st.text(min_size=1, max_size=70).filter(lambda s: re.fullmatch(COMMAND_ID_PATTERN, s) is None),
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# As JSON literals: Python will not even print an int of more than 4,300 digits.
_out_of_range_amounts = st.one_of(
    st.integers(max_value=0).map(str),
    st.integers(min_value=MAX_CHARGE_AMOUNT + 1).map(str),
    st.integers(min_value=20, max_value=5000).map(lambda digits: "9" * digits),
)


def schema_documents(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON documents valid per the model's own JSON Schema (hypothesis-jsonschema)."""
    return cast("st.SearchStrategy[dict[str, Any]]", from_schema(model.model_json_schema()))


def _with_field(document: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**document, name: value}


def _render_with_raw(document: dict[str, Any], name: str, raw: str) -> bytes:
    """The document's JSON with `name`'s value written as the literal text `raw`."""
    parts = [f"{json.dumps(k)}:{raw if k == name else json.dumps(v)}" for k, v in document.items()]
    return ("{" + ",".join(parts) + "}").encode()


@st.composite
def hostile_charges(draw: st.DrawFn, user_id: int) -> Hostile:
    """One hostile record meant for `user_id`'s partition of shop.points.charge."""
    key = str(user_id).encode()
    command_id = draw(_command_ids)
    amount = draw(st.integers(min_value=1, max_value=MAX_CHARGE_AMOUNT))
    valid = _valid_document(command_id, user_id, amount)
    kind = draw(
        st.sampled_from(
            [
                "wrong_type",
                "string_for_number",
                "float_for_integer",
                "out_of_range_integer",
                "unknown_field",
                "schema_document_with_unknown_field",
                "duplicate_field",
                "missing_field",
                "malformed_command_id",
                "invalid_utf8",
                "other_encoding",
                "byte_order_mark",
                "deep_nesting",
                "nan_or_infinity",
                "lone_surrogate",
                "not_an_object",
                "truncated",
                "empty_or_tombstone",
                "too_large",
                "wrong_key",
                "schema_document_wrong_key",
            ]
        )
    )
    invalid_json = DeadLetterReason.INVALID_JSON
    invalid_message = DeadLetterReason.INVALID_MESSAGE

    def made(
        value: bytes | None, reason: DeadLetterReason, record_key: bytes | None = key
    ) -> Hostile:
        return Hostile(kind, record_key, value, reason)

    match kind:
        case "wrong_type":
            name = draw(st.sampled_from(FIELDS))
            wrong = draw(
                _json_values.filter(
                    lambda v: (
                        not isinstance(v, int if name != "command_id" else str)
                        or isinstance(v, bool)
                    )
                )
            )
            return made(_dumps(_with_field(valid, name, wrong)), invalid_message)
        case "string_for_number":
            name = draw(st.sampled_from(["user_id", "amount"]))
            return made(_dumps(_with_field(valid, name, str(valid[name]))), invalid_message)
        case "float_for_integer":
            name = draw(st.sampled_from(["user_id", "amount"]))
            number = draw(st.sampled_from([float(valid[name]), valid[name] + 0.5, 1e400]))
            raw = "1e400" if number == 1e400 else repr(number)
            return made(_render_with_raw(valid, name, raw), invalid_message)
        case "out_of_range_integer":
            name = draw(st.sampled_from(["user_id", "amount"]))
            literal = draw(_out_of_range_amounts)
            if name == "user_id" and len(literal) < 20 and 1 <= int(literal) < 2**63:
                literal = f"-{literal}"
            return made(_render_with_raw(valid, name, literal), invalid_message)
        case "unknown_field":
            name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in FIELDS))
            return made(_dumps(_with_field(valid, name, draw(_json_values))), invalid_message)
        case "schema_document_with_unknown_field":
            document = draw(schema_documents(ChargePoints))
            name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in FIELDS))
            return made(_dumps(_with_field(document, name, 1)), invalid_message)
        case "duplicate_field":
            name = draw(st.sampled_from(FIELDS))
            again = draw(st.sampled_from([json.dumps(valid[name]), "7", '"x"']))
            body = _dumps(valid)[:-1] + f",{json.dumps(name)}:{again}}}".encode()
            return made(body, invalid_json)
        case "missing_field":
            name = draw(st.sampled_from(FIELDS))
            return made(_dumps({k: v for k, v in valid.items() if k != name}), invalid_message)
        case "malformed_command_id":
            bad_id = draw(_bad_command_ids)
            return made(_dumps(_with_field(valid, "command_id", bad_id)), invalid_message)
        case "invalid_utf8":
            bad = draw(
                st.sampled_from(
                    [
                        b"\xff",
                        b"\xfe",
                        b"\xc0\x80",
                        b"\xed\xa0\x80",
                        b"\xe2\x82",
                        b"\xf4\x90\x80\x80",
                    ]
                )
            )
            body = _dumps(valid)
            at = body.index(b'"command_id":"') + len(b'"command_id":"')
            return made(body[:at] + bad + body[at:], invalid_json)
        case "other_encoding":
            encoding = draw(
                st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
            )
            return made(_dumps(valid).decode().encode(encoding), invalid_json)
        case "byte_order_mark":
            return made(b"\xef\xbb\xbf" + _dumps(valid), invalid_json)
        case "deep_nesting":
            depth = draw(st.integers(min_value=MAX_DEPTH + 1, max_value=10_000))  # within 64 KiB
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            raw = opener * depth + "1" + closer * depth
            return made(_render_with_raw(valid, "amount", raw), invalid_json)
        case "nan_or_infinity":
            raw = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
            return made(_render_with_raw(valid, "amount", raw), invalid_json)
        case "lone_surrogate":
            surrogate = draw(st.integers(min_value=0xD800, max_value=0xDFFF))
            raw = json.dumps(command_id)[:-1] + f'\\u{surrogate:04x}"'
            return made(_render_with_raw(valid, "command_id", raw), invalid_json)
        case "not_an_object":
            return made(
                draw(st.sampled_from([b"[]", b"[1,2]", b'"charge"', b"42", b"null", b"true"])),
                invalid_json,
            )
        case "truncated":
            body = _dumps(valid)
            return made(
                body[: draw(st.integers(min_value=1, max_value=len(body) - 1))], invalid_json
            )
        case "empty_or_tombstone":
            return made(draw(st.sampled_from([b"", None])), invalid_json)
        case "too_large":
            size = draw(
                st.one_of(
                    st.integers(min_value=MAX_MESSAGE_BYTES + 1, max_value=300_000),
                    st.integers(min_value=300_000, max_value=BROKER_VALUE_LIMIT),
                    st.just(900_000),
                )
            )
            body = _dumps(_with_field(valid, "padding", ""))
            padding = (b"hostile-%d-" % size) * (size // 10 + 1)
            value = body[:-2] + padding[: size - len(body)] + b'"}'
            assert len(value) == size
            return made(value, DeadLetterReason.TOO_LARGE)
        case "wrong_key" | "schema_document_wrong_key":
            if kind == "schema_document_wrong_key":
                document = draw(schema_documents(ChargePoints))
                value = _dumps(document)
                canonical = str(document["user_id"]).encode()
            else:
                value, canonical = _dumps(valid), key
            wrong_key = draw(
                st.one_of(
                    st.none(),
                    st.sampled_from(
                        [
                            b"",
                            b"0" + canonical,
                            b" " + canonical,
                            canonical + b" ",
                            b"+" + canonical,
                        ]
                    ),
                    st.sampled_from([canonical + b".0", b"\xff" + canonical, b"9" * 5000]),
                    st.integers(min_value=1, max_value=2**63 - 1).map(lambda n: str(n).encode()),
                ).filter(lambda k: k != canonical)
            )
            return made(value, DeadLetterReason.KEY_MISMATCH, record_key=wrong_key)
    raise AssertionError(kind)
