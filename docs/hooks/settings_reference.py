"""MkDocs hook: the configuration reference, made from `shopflow.settings.Settings` at
build time, so that it cannot drift from the code.

`configuration.md` holds the marker below; `on_page_markdown` replaces it with a table
of every setting: its environment variable, type, default and description, as the
code has them. A description that names `docs/<page>.md#<anchor>` gets a link there (the
strict build checks it), and one that names another setting's variable links its row.
`tests/unit/test_settings_reference.py` renders the table too, without MkDocs.
"""

import enum
import html
import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from shopflow.settings import Settings, env_name

MARKER = "<!-- settings-reference -->"
PAGE = "configuration.md"

_DOCS_LINK = re.compile(r"docs/([\w/-]+)\.md(?:#([\w-]+))?")
# An environment variable: SHOPFLOW_... (a setting's row is linked), OTEL_..., OTEL_..._*.
_VARIABLE = re.compile(r"\b(?:SHOPFLOW|OTEL)_[A-Z0-9_]*[A-Z0-9](?:_\*)?")
_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret",
}


def anchor(variable: str) -> str:
    """The id of a setting's row: its variable in lower case."""
    return variable.lower()


def _type(annotation: Any) -> str:
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type(k) for k in kinds) + ", or unset"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = [
        f"{sign} {getattr(rule, name)}"
        for rule in field.metadata
        for name, sign in signs.items()
        if getattr(rule, name, None) is not None
    ]
    return f" ({', '.join(found)})" if found else ""


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    text = str(value)
    return f"`{text}`" if text else "empty"


def _page_link(match: re.Match[str]) -> str:
    page, section = match[1], match[2]
    text = page.replace("-", " ") + (f", {section.replace('-', ' ')}" if section else "")
    return f"[{text}]({page}.md{f'#{section}' if section else ''})"


def _variable(match: re.Match[str], variables: set[str]) -> str:
    name = match[0]
    return f"[`{name}`](#{anchor(name)})" if name in variables else f"`{name}`"


def _description(text: str, variables: set[str]) -> str:
    """The description as Markdown for a table cell: its prose HTML-escaped, links to the
    pages and settings it names; what is inside backticks is left as it is."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans (a table ignores pipes in them)
        prose = html.escape(parts[i], quote=False).replace("|", "\\|")
        prose = _DOCS_LINK.sub(_page_link, prose)
        parts[i] = _VARIABLE.sub(lambda m: _variable(m, variables), prose)
    return "`".join(parts)


def render_settings_reference() -> str:
    """The table of every setting, in the order `Settings` declares them."""
    fields = Settings.model_fields
    variables = {env_name(name) for name in fields}
    rows = [
        "| variable | type | default | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in fields.items():
        variable = env_name(name)
        rows.append(
            f'| <span id="{anchor(variable)}"></span>`{variable}` '
            f"| {_type(field.annotation)}{_bounds(field)} "
            f"| {_default(field.default)} "
            f"| {_description(field.description or '', variables)} |"
        )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{PAGE} has lost its marker {MARKER}")
    return markdown.replace(MARKER, render_settings_reference())
