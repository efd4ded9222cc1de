"""The effective settings, secrets masked, for operators (`shopflow config`)."""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any, Final

from pydantic import SecretBytes, SecretStr
from rich.table import Table
from rich.text import Text

from shopflow.local_credentials import without_password
from shopflow.settings import Settings, env_name

HIDDEN: Final = "***"
# A field named like this holds a secret whatever its value looks like. A secret setting
# should rather be a pydantic SecretStr (masked here, and in every repr and log line of
# the settings), as SHOPFLOW_KAFKA_PASSWORD is.
SECRET_NAME_PARTS: Final = ("password", "secret", "token", "credential")


def masked(name: str, value: Any) -> Any:
    """`value` safe to print. URLs (the database URLs, Redis's) keep everything but their
    password: SQLAlchemy's URL parser renders any scheme://user:password@host form with
    `***` for the password."""
    if isinstance(value, SecretStr | SecretBytes):
        return HIDDEN
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if not isinstance(value, str):
        return value
    if any(part in name.lower() for part in SECRET_NAME_PARTS):
        return HIDDEN
    return without_password(value)


@dataclass(frozen=True)
class ShownSetting:
    name: str  # the Settings field
    variable: str  # its environment variable
    value: Any  # masked
    source: str  # "environment" or "default"


def effective(settings: Settings) -> list[ShownSetting]:
    """Every field of `settings`, in declaration order."""
    return [
        ShownSetting(
            name,
            env_name(name),
            masked(name, getattr(settings, name)),
            "environment" if name in settings.model_fields_set else "default",
        )
        for name in type(settings).model_fields
    ]


def table(shown: Sequence[ShownSetting]) -> Table:
    settings = Table()
    for column in ("setting", "variable", "value", "source"):
        settings.add_column(column, overflow="fold")
    for setting in shown:
        settings.add_row(
            Text(setting.name), Text(setting.variable), Text(str(setting.value)), setting.source
        )
    return settings
