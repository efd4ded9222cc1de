"""The configuration reference (docs/configuration.md) is made from `Settings` by the docs
site's hook: every setting is in it, with its default, and says what it does."""

import importlib.util
from pathlib import Path
from types import ModuleType

from shopflow.settings import Settings, env_name

DOCS = Path(__file__).parents[2] / "docs"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", DOCS / "hooks" / "settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows() -> dict[str, str]:
    table: str = _hook().render_settings_reference()
    rows = [line for line in table.splitlines() if line.startswith('| <span id="')]
    return {row.split("`")[1]: row for row in rows}


def test_every_setting_has_its_row_in_declaration_order() -> None:
    assert list(_rows()) == [env_name(name) for name in Settings.model_fields]


def test_every_setting_says_what_it_does() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_a_row_has_the_settings_default() -> None:
    rows = _rows()
    assert "| `500` |" in rows["SHOPFLOW_BATCH_MAX_RECORDS"]
    assert "| unset |" in rows["SHOPFLOW_KAFKA_PASSWORD"]
    assert "| empty |" in rows["SHOPFLOW_TOPIC_PREFIX"]


def test_the_configuration_page_has_the_marker_the_hook_replaces() -> None:
    assert _hook().MARKER in (DOCS / "configuration.md").read_text()
