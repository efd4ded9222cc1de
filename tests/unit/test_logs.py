"""The process's logging (shopflow.logs): JSON lines with the fields a log pipeline
reads, or readable console lines; the standard library's loggers go through the same
processors; the format follows the stream unless SHOPFLOW_LOG_FORMAT forces it."""

import io
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from shopflow.logs import configure_logging
from shopflow.settings import LogFormat, Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Each test configures the process's logging (forced: pytest's own handlers are on
    the root logger); put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka_level = logging.getLogger("aiokafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(aiokafka_level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(stream)]


def test_a_standard_library_record_is_one_json_object_with_its_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", LogFormat.JSON, stream=stream, force=True)

    logging.getLogger("shopflow.consumers.pipeline").info(
        "batch %s", "applied", extra={"topic": "shop.points.charge", "offsets": {3: [7, 9]}}
    )

    [line] = _json_lines(stream)
    stamped = datetime.fromisoformat(line.pop("timestamp"))
    assert stamped.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamped) < timedelta(seconds=10)
    assert line == {
        "event": "batch applied",
        "level": "info",
        "logger": "shopflow.consumers.pipeline",
        "topic": "shop.points.charge",
        "offsets": {"3": [7, 9]},
    }


def test_an_exception_is_a_string_field_of_its_line() -> None:
    stream = io.StringIO()
    configure_logging("info", LogFormat.JSON, stream=stream, force=True)

    try:
        raise ConnectionResetError("database went away")
    except ConnectionResetError:
        logging.getLogger("shopflow.consumers.subscribers").exception("batch failed")

    [line] = _json_lines(stream)
    assert (line["event"], line["level"]) == ("batch failed", "error")
    assert isinstance(line["exception"], str)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ConnectionResetError: database went away")


def test_the_level_filters_and_third_party_loggers_come_through_alike() -> None:
    stream = io.StringIO()
    configure_logging("info", LogFormat.JSON, stream=stream, force=True)

    logging.getLogger("shopflow.consumers.pipeline").debug("command accepted")
    # FastStream's logger, with the context it passes as `extra`; uvicorn's, with the
    # coloured copy of its message it passes too.
    logging.getLogger("shopflow.kafka").warning(
        "Kafka error occurred", extra={"topic": "t", "group_id": "g", "message_id": ""}
    )
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "\x1b[1m42\x1b[0m"}
    )
    logging.getLogger("aiokafka.consumer.group_coordinator").info("joined the group")
    logging.getLogger("aiokafka.conn").warning("connection lost")
    structlog.get_logger("shopflow.example").info("structlog too", batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)

    lines = _json_lines(stream)
    for line in lines:
        line.pop("timestamp")
    assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
        ("shopflow.kafka", "warning", "Kafka error occurred"),
        ("uvicorn.error", "info", "Started server process [42]"),
        ("aiokafka.conn", "warning", "connection lost"),
        ("shopflow.example", "info", "structlog too"),
        ("py.warnings", "warning", lines[4]["event"]),
    ]
    assert (lines[0]["topic"], lines[0]["group_id"]) == ("t", "g")
    assert "color_message" not in lines[1]
    assert lines[3]["batch"] == 3
    assert "DeprecationWarning: a deprecated call" in lines[4]["event"]


def test_console_format_when_forced_is_readable_and_not_json() -> None:
    stream = io.StringIO()  # not a terminal: forced, and without colours
    configure_logging("info", LogFormat.CONSOLE, stream=stream, force=True)

    logging.getLogger("shopflow.consumers.pipeline").info(
        "command rejected", extra={"command_id": "c-1", "reason": "unknown_user"}
    )

    [line] = _lines(stream)
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "\x1b[" not in line
    assert "[info     ] command rejected" in line
    assert "[shopflow.consumers.pipeline]" in line
    assert "command_id=c-1" in line
    assert "reason=unknown_user" in line
    assert datetime.fromisoformat(line.split(" ", 1)[0]).utcoffset() == timedelta(0)


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    terminal, pipe = Terminal(), io.StringIO()

    configure_logging("info", LogFormat.AUTO, stream=terminal, force=True)
    logging.getLogger("shopflow").info("on a terminal")
    configure_logging("info", LogFormat.AUTO, stream=pipe, force=True)
    logging.getLogger("shopflow").info("in a pipe")

    [readable] = _lines(terminal)
    assert "on a terminal" in readable
    assert "\x1b[" in readable  # coloured, on a terminal
    assert [line["event"] for line in _json_lines(pipe)] == ["in a pipe"]


def test_configuring_again_replaces_the_handler_and_a_foreign_one_is_kept() -> None:
    first, second, mine = io.StringIO(), io.StringIO(), io.StringIO()
    configure_logging("info", LogFormat.JSON, stream=first, force=True)
    configure_logging("warning", LogFormat.JSON, stream=second)
    logging.getLogger("shopflow").info("not at warning")
    logging.getLogger("shopflow").warning("once")

    assert _lines(first) == []
    assert [line["event"] for line in _json_lines(second)] == ["once"]

    # Someone else's configuration (an application embedding the CLI, a test runner):
    # left as it is unless forced.
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler(mine)]
    configure_logging("debug", LogFormat.JSON, stream=second)
    logging.getLogger("shopflow").warning("theirs")

    assert mine.getvalue() == "theirs\n"
    assert len(_lines(second)) == 1


def test_the_format_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPFLOW_LOG_FORMAT", raising=False)
    assert Settings().log_format is LogFormat.AUTO
    monkeypatch.setenv("SHOPFLOW_LOG_FORMAT", "console")
    assert Settings().log_format is LogFormat.CONSOLE
    monkeypatch.setenv("SHOPFLOW_LOG_FORMAT", "json")
    assert Settings().log_format is LogFormat.JSON
