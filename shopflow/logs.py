"""How a shopflow process logs: one configuration, made once at the start of each
command (`shopflow.cli`), for every logger of the process, shopflow's and its libraries'.

One handler on the root logger, structlog's `ProcessorFormatter`: JSON lines when stderr
is not a terminal, the console renderer when it is (`SHOPFLOW_LOG_FORMAT` forces
either). Tracebacks are plain, never rich's with local variables, which would put
connection URLs and whole batches in the log. A process that configured logging itself
keeps its configuration unless `force`. Details: docs/operating.md, "Logs".
"""

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from shopflow.settings import LogFormat

# Loggers whose INFO is not worth a line: aiokafka logs every group join, rebalance and
# coordinator change at INFO (FastStream's own lines and ours already say what matters).
_QUIETER = {"aiokafka": logging.WARNING}

# Attributes a record can carry that are not fields of the event: uvicorn's coloured copy
# of the message, and what another formatter may have set on the record before ours.
_NOT_FIELDS = ("color_message", "message", "asctime")


def _drop_record_leftovers(_: Any, __: str, event: EventDict) -> EventDict:
    for name in _NOT_FIELDS:
        event.pop(name, None)
    return event


class _ShopflowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs (so that a second call can find it)."""


def _renderer(log_format: LogFormat, stream: TextIO) -> list[Processor]:
    """The last processors: the event as a JSON object, or as a readable line."""
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if _is_terminal(stream) else LogFormat.JSON
    if log_format is LogFormat.JSON:
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [
        structlog.dev.ConsoleRenderer(
            colors=_is_terminal(stream), exception_formatter=structlog.dev.plain_traceback
        )
    ]


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"not a logging level: {level!r}")
    return number


def configure_logging(
    level: str | int = "info",
    log_format: LogFormat = LogFormat.AUTO,
    *,
    stream: TextIO | None = None,
    force: bool = False,
) -> None:
    """Log at `level` and above, in `log_format`, to `stream` (stderr): see the module's
    docstring."""
    root = logging.getLogger()
    if not force and any(not isinstance(h, _ShopflowHandler) for h in root.handlers):
        return
    stream = stream if stream is not None else sys.stderr
    number = _level(level)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    handler = _ShopflowHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Records of the standard library: their `extra` fields become the event's.
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.ExtraAdder(),
                _drop_record_leftovers,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(log_format, stream),
            ],
        )
    )
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name, floor in _QUIETER.items():
        logging.getLogger(name).setLevel(max(floor, number))
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
