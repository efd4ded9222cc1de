"""A replicated PostgreSQL's multi-host URL reaches asyncpg intact: the engine's dialect, the
bare asyncpg pools beside it and asyncpg's own parser all see every host, in order, with its
port, and the session attribute that picks the primary or a standby."""

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncpg import connect_utils
from sqlalchemy import event, make_url

from shopflow.local_credentials import LocalCredentials, with_password
from shopflow.persistence.database import (
    _drop_read_only,
    asyncpg_connect_args,
    connect,
    create_engine,
    on_primary,
)

HOSTS = "host=127.0.0.1:25432&host=127.0.0.1:25433&host=127.0.0.1:25434"
COMMANDS = f"postgresql+asyncpg://shopflow:pw@/shopflow?{HOSTS}&target_session_attrs=read-write"
QUERIES = (
    f"postgresql+asyncpg://shopflow_reader:pw@/shopflow?{HOSTS}&target_session_attrs=prefer-standby"
)


async def _tried(
    args: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *, hanging: int | None = None
) -> list[Any]:
    """What `connect` makes asyncpg do with the arguments: the addresses asyncpg tries, in
    order, each refused here (or, the port `hanging`, never answering), with the session
    attribute it would have checked and the database."""
    tried: list[Any] = []

    async def refused(*, addr: Any, params: Any, **_: Any) -> Any:
        tried.append((addr, params.target_session_attrs.value, params.database))
        if addr[1] == hanging:
            await asyncio.sleep(3600)
        raise ConnectionRefusedError(f"{addr} refused")

    monkeypatch.setattr(connect_utils, "_connect_addr", refused)
    with pytest.raises(ConnectionRefusedError):
        await connect(args, host_timeout_s=0.2)
    return tried


def test_the_bare_asyncpg_arguments_name_every_host_in_order() -> None:
    args = asyncpg_connect_args(COMMANDS)
    assert args == {
        "host": ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
        "port": [25432, 25433, 25434],
        "user": "shopflow",
        "password": "pw",
        "database": "shopflow",
        "target_session_attrs": "read-write",
    }


async def test_every_host_is_tried_in_order_for_the_primary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried = await _tried(asyncpg_connect_args(COMMANDS), monkeypatch)
    assert tried == [
        (("127.0.0.1", 25432), "read-write", "shopflow"),
        (("127.0.0.1", 25433), "read-write", "shopflow"),
        (("127.0.0.1", 25434), "read-write", "shopflow"),
    ]


async def test_prefer_standby_looks_for_a_standby_on_every_host_then_takes_any(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried = await _tried(asyncpg_connect_args(QUERIES), monkeypatch)
    assert [(port, attrs) for (_, port), attrs, _ in tried] == [
        (25432, "standby"),
        (25433, "standby"),
        (25434, "standby"),
        (25432, "any"),
        (25433, "any"),
        (25434, "any"),
    ]


async def test_a_host_that_never_answers_gets_its_own_timeout_and_the_next_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncpg's own walk over the hosts has one timeout for them all: a first host cut
    off by a partition would use it up, and the primary behind it would never be tried."""
    began = time.monotonic()
    tried = await _tried(asyncpg_connect_args(COMMANDS), monkeypatch, hanging=25432)
    assert [port for (_, port), _, _ in tried] == [25432, 25433, 25434]
    assert time.monotonic() - began < 2.0  # 0.2 s for the silent host, not the whole wait


def test_the_engine_gives_asyncpg_the_same_arguments_as_the_bare_pools() -> None:
    engine = create_engine(COMMANDS, pool_size=1, connect_timeout_s=2.5)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    assert cargs == []
    assert cparams == asyncpg_connect_args(COMMANDS)


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
