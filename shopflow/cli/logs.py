"""The `--log-level` option of the `shopflow` commands that run the service or touch its
stores; the logging itself is configured by `shopflow.logs`."""

from typing import Annotated

import typer

LogLevel = Annotated[
    str,
    typer.Option(
        help="Logging level (debug shows every command's line). The format is "
        "SHOPFLOW_LOG_FORMAT's: JSON lines unless stderr is a terminal."
    ),
]
