"""Logging of the `shopflow` commands that run the service or touch its stores."""

import logging
from typing import Annotated

import typer


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


LogLevel = Annotated[str, typer.Option(help="Logging level.")]
