"""The ledger's listener keeps trying to connect whatever opening a connection raises
while the database is away or failing over: asyncpg's "no host is writable"
(TargetServerAttributeNotMatched) is none of its error bases, and once ended the
listener's task in a chaos run (after which no announcement was heard, and the serve's
shutdown failed on the task's error)."""

import asyncio
from typing import Any

import asyncpg
import pytest

from shopflow.persistence import ledger_listener
from shopflow.persistence.ledger_listener import LedgerListener

URL = (
    "postgresql+asyncpg://u:p@/db?host=127.0.0.1:1&host=127.0.0.1:2&target_session_attrs=read-write"
)


async def test_the_listener_outlasts_every_failure_to_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[Exception] = [
        asyncpg.TargetServerAttributeNotMatched("none of the hosts is read-write"),
        ConnectionRefusedError(111, "refused"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InternalClientError("cannot switch to state 12"),
    ]
    tried = asyncio.Event()

    async def failing_connect(_options: dict[str, Any], *, host_timeout_s: float) -> Any:
        if failures:
            raise failures.pop(0)
        tried.set()
        await asyncio.Event().wait()  # the last try: hangs until the listener stops

    monkeypatch.setattr(ledger_listener, "connect", failing_connect)
    monkeypatch.setattr(ledger_listener, "RECONNECT_PAUSE_S", (0.001, 0.001))
    listener = LedgerListener(URL, lambda _: None, lambda _: None, lambda: None)
    await listener.start()
    async with asyncio.timeout(5):
        await tried.wait()
    assert not failures  # each failure was met, and the listener tried again after it
    assert not listener.listening
    await listener.stop()  # cancels the hanging try; raises nothing
