"""The ledger's announcements, heard: one PostgreSQL connection that LISTENs on the
channels of `persistence.ledger` (the ids spent, by migration 0006's trigger; the ids
answered `temporarily_unavailable`, by the applier) and hands each command id to a
callback, so that a process holding thousands of waiting requests holds one database
connection for all of them.

Notifications sent while the connection is down are lost (PostgreSQL keeps none for a
listener that is not there): `on_reconnect` is called after every (re)connection, so
that the waiters look at the ledger again rather than trust that they missed nothing.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from shopflow.persistence.database import CONNECT_FAILURES, asyncpg_connect_args, connect
from shopflow.persistence.ledger import SPENT_CHANNEL, UNAVAILABLE_CHANNEL

log = logging.getLogger(__name__)

RECONNECT_PAUSE_S = (0.2, 5.0)  # first pause, longest pause, doubling between
CONNECT_TIMEOUT_S = 5.0  # each host's


class LedgerListener:
    def __init__(
        self,
        database_url: str,
        on_spent: Callable[[Iterable[str]], None],
        on_unavailable: Callable[[Iterable[str]], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._connect_args = asyncpg_connect_args(database_url)
        self._on_spent = on_spent
        self._on_unavailable = on_unavailable
        self._on_reconnect = on_reconnect
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="ledger-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_listening(self, timeout_s: float) -> bool:
        """Whether the listener is connected within `timeout_s` (for tests and readiness)."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _notified(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == SPENT_CHANNEL:
            self._on_spent(payload.split())
        else:
            self._on_unavailable(payload.split())

    async def _listen_forever(self) -> None:
        pause = RECONNECT_PAUSE_S[0]
        while True:
            try:
                connection = await connect(self._connect_args, host_timeout_s=CONNECT_TIMEOUT_S)
            except CONNECT_FAILURES as exc:
                # TargetServerAttributeNotMatched while a replicated PostgreSQL has no
                # primary is none of asyncpg's error bases: it once ended this task.
                log.warning("ledger listener: cannot connect (%s); again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_PAUSE_S[1])
                continue
            lost = asyncio.Event()
            try:
                connection.add_termination_listener(_setter(lost))
                for channel in (SPENT_CHANNEL, UNAVAILABLE_CHANNEL):
                    await connection.add_listener(channel, self._notified)
                self._connected.set()
                pause = RECONNECT_PAUSE_S[0]
                self._on_reconnect()
                await lost.wait()
                log.warning("ledger listener: connection lost; reconnecting")
            except CONNECT_FAILURES as exc:
                log.warning("ledger listener: %s; reconnecting", exc)
            finally:
                self._connected.clear()
                if not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            self._on_reconnect()  # wake the waiters: they look at the ledger themselves


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    """A termination listener that sets `event` (bound now, not to a loop variable)."""
    return lambda _connection: event.set()
