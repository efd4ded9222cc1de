"""What became of a command: its result as the ledger stored it (the bytes that were
published), now or as soon as it is spent (CONTRACT.md, `GET /commands/{command_id}`).

A waiting request holds no database connection: it registers an event under its command
id, looks at the ledger once, and sleeps until the ledger's announcement of that id
(`persistence.ledger_listener`, one connection per process) or its deadline wakes it,
then looks once more. While the listener is down, waiters look again every
`FALLBACK_LOOK_S` instead: slower answers, never lost ones.
"""

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.persistence.ledger_listener import LedgerListener
from shopflow.persistence.tables import processed_commands

FALLBACK_LOOK_S = 1.0

_c = processed_commands.c
_STORED = select(_c.command_type, _c.entity_key, _c.result_json, _c.payload_sha256).where(
    _c.command_id == bindparam("id")
)


@dataclass(frozen=True)
class StoredResult:
    """A spent command's result: the type and entity it was about (for who may see it),
    and the result event as it was published, byte for byte."""

    command_type: str
    entity_key: str
    result_json: str
    payload_sha256: bytes  # of the command that was applied (`CommandRoute.fingerprint`)


class CommandResults:
    def __init__(self, engine: AsyncEngine, listen_url: str) -> None:
        self._engine = engine
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listener = LedgerListener(listen_url, self._spent, self._wake_all)

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    async def wait_listening(self, timeout_s: float) -> bool:
        return await self._listener.wait_listening(timeout_s)

    async def stored(self, command_id: str) -> StoredResult | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_STORED, {"id": command_id})).first()
        if row is None:
            return None
        return StoredResult(row[0], row[1], row[2], bytes(row[3]))

    async def wait(self, command_id: str, timeout_s: float) -> StoredResult | None:
        """The result, as soon as it is stored and at most `timeout_s` from now; None if
        there is none by then."""
        woken = asyncio.Event()
        self._waiting.setdefault(command_id, set()).add(woken)
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                # Registered before looking: an announcement between the look and the
                # sleep sets the event, and the sleep returns at once.
                found = await self.stored(command_id)
                left = deadline - asyncio.get_running_loop().time()
                if found is not None or left <= 0:
                    return found
                if not self._listener.listening:
                    left = min(left, FALLBACK_LOOK_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), left)
                woken.clear()
        finally:
            events = self._waiting.get(command_id)
            if events is not None:
                events.discard(woken)
                if not events:
                    del self._waiting[command_id]

    def _spent(self, command_ids: Iterable[str]) -> None:
        for command_id in command_ids:
            for woken in self._waiting.get(command_id, ()):
                woken.set()

    def _wake_all(self) -> None:
        for events in self._waiting.values():
            for woken in events:
                woken.set()
