"""A replicated PostgreSQL's multi-host URL reaches asyncpg intact: the engine's dialect, the
bare asyncpg pools beside it and asyncpg's own parser all see every host, in order, with its
port, and the session attribute that picks the primary or a standby."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from asyncpg import connect_utils
from sqlalchemy import event, make_url

from shopflow.local_credentials import LocalCredentials, with_password
from shopflow.persistence.database import (
    _drop_read_only,
    asyncpg_connect_args,
    create_engine,
    on_primary,
)

HOSTS = "host=127.0.0.1:25432&host=127.0.0.1:25433&host=127.0.0.1:25434"
COMMANDS = f"postgresql+asyncpg://shopflow:pw@/shopflow?{HOSTS}&target_session_attrs=read-write"
QUERIES = (
    f"postgresql+asyncpg://shopflow_reader:pw@/shopflow?{HOSTS}&target_session_attrs=prefer-standby"
)


async def _tried(args: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What asyncpg.connect does with the arguments: the addresses it tries, in order (each
    refused here), and the session attribute it would have checked."""
    tried: list[Any] = []

    async def refused(*, addr: Any, params: Any, **_: Any) -> Any:
        tried.append((addr, params.target_session_attrs.value, params.database))
        raise ConnectionRefusedError(f"{addr} refused")

    monkeypatch.setattr(connect_utils, "_connect_addr", refused)
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(**args)
    return tried


def test_the_bare_asyncpg_arguments_name_every_host_in_order() -> None:
    args = asyncpg_connect_args(COMMANDS, connect_timeout_s=2.5)
    assert args == {
        "host": ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        "port": [25432, 25433, 25434],
        "user": "shopflow",
        "password": "pw",
        "database": "shopflow",
        "target_session_attrs": "read-write",
        "timeout": 2.5,
    }


@pytest.mark.parametrize(("url", "attrs"), [(COMMANDS, "read-write"), (QUERIES, "prefer-standby")])
async def test_asyncpg_tries_every_host_for_the_session_attribute(
    url: str, attrs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = await _tried(asyncpg_connect_args(url), monkeypatch)
    assert tried == [
        (("127.0.0.1", 25432), attrs, "shopflow"),
        (("127.0.0.1", 25433), attrs, "shopflow"),
        (("127.0.0.1", 25434), attrs, "shopflow"),
    ]


def test_the_engine_gives_asyncpg_the_same_arguments_as_the_bare_pools() -> None:
    engine = create_engine(COMMANDS, pool_size=1, connect_timeout_s=2.5)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    assert cargs == []
    assert {**cparams, "timeout": 2.5} == asyncpg_connect_args(COMMANDS, connect_timeout_s=2.5)


def test_a_single_host_url_stays_one_host() -> None:
    args = asyncpg_connect_args("postgresql+asyncpg://shopflow:pw@127.0.0.1:5432/shopflow")
    assert args["host"] == "127.0.0.1"
    assert args["port"] == 5432
    assert "target_session_attrs" not in args


def test_the_ledger_reads_the_primary_whatever_the_queries_prefer() -> None:
    held = make_url(on_primary(QUERIES))
    assert held.query["target_session_attrs"] == "read-write"
    assert held.query["host"] == ("127.0.0.1:25432", "127.0.0.1:25433", "127.0.0.1:25434")
    assert held.password == "pw"
    single = "postgresql+asyncpg://shopflow_reader:pw@127.0.0.1:5432/shopflow"
    assert on_primary(single) == single


def test_the_local_password_is_filled_into_a_multi_host_url() -> None:
    credentials = LocalCredentials(Path("unused"), {"postgres": {"shopflow": "secret"}})
    url = COMMANDS.replace("shopflow:pw@", "shopflow@")
    filled = make_url(with_password(url, credentials, "postgres"))
    assert filled.password == "secret"
    assert asyncpg_connect_args(filled.render_as_string(hide_password=False))["port"] == [
        25432,
        25433,
        25434,
    ]


def test_a_read_only_error_drops_its_connection_and_others_do_not() -> None:
    """A node that became a standby answers writes with SQLSTATE 25006: the pool must not
    hand that connection out again (the retry then connects to the new primary)."""
    engine = create_engine(COMMANDS, pool_size=1)

    def context(sqlstate: str | None) -> Any:
        error = type("Error", (Exception,), {"sqlstate": sqlstate})()
        return SimpleNamespace(original_exception=error, is_disconnect=False)

    assert event.contains(engine.sync_engine, "handle_error", _drop_read_only)
    read_only, unique = context("25006"), context("23505")
    _drop_read_only(read_only)
    _drop_read_only(unique)
    assert read_only.is_disconnect
    assert not unique.is_disconnect
