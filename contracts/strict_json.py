"""Strict JSON, as the contract's envelope defines it (CONTRACT.md, "Envelope").

Python's `json.loads` is lenient where two parsers must agree: on bytes it guesses
UTF-16 and UTF-32, it keeps the last of duplicate names, it accepts `NaN` and
`Infinity`, and it lets lone surrogates (`"\\ud800"`) through into strings that cannot
be encoded again. `loads` refuses all of these with `InvalidJson`, and never raises
anything else, whatever the bytes.

Two bounds of our own, so that hostile input costs little and fails the same way every
time: nesting deeper than `MAX_DEPTH`, and integers with more than `MAX_INTEGER_DIGITS`
digits (far beyond any 63-bit bound), which are parsed as `OutOfRangeInteger` so that
validation then rejects them as out of range rather than the parser spending time on them.
"""

import json
import re
from typing import Any, Final

MAX_DEPTH: Final = 32
MAX_INTEGER_DIGITS: Final = 40

_UTF8_BOM: Final = b"\xef\xbb\xbf"
# A \u escape of a surrogate: only then can the parsed text hold a lone surrogate.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidJson(ValueError):
    """The bytes are not one strict-JSON value."""


class OutOfRangeInteger:
    """An integer literal too long to be within any bound of the contract."""

    __slots__ = ("digits",)

    def __init__(self, literal: str) -> None:
        self.digits = len(literal.lstrip("-"))

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidJson(f"duplicate name {name[:100]!r} in an object")
            seen.add(name)
    return document


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def _integer(literal: str) -> int | OutOfRangeInteger:
    if len(literal) > MAX_INTEGER_DIGITS:
        return OutOfRangeInteger(literal)
    return int(literal)


def _check_shape(document: Any, *, check_strings: bool) -> None:
    """Depth at most MAX_DEPTH; with check_strings, every string encodable as UTF-8."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
            for name, item in value.items():
                if check_strings:
                    _check_string(name)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((item, depth + 1) for item in value)
        elif check_strings and isinstance(value, str):
            _check_string(value)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJson(
            f"a string holds a lone surrogate (\\u{ord(exc.object[exc.start]):04x})"
        ) from None


def loads(value: bytes) -> Any:
    """The value of one strict-JSON document, or `InvalidJson` saying why not."""
    if value.startswith(_UTF8_BOM):
        raise InvalidJson("starts with a byte-order mark")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_integer,
        )
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError among them
        raise InvalidJson(str(exc)[:200]) from None
    _check_shape(document, check_strings=_SURROGATE_ESCAPE.search(text) is not None)
    return document
