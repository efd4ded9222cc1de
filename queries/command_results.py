"""What became of a command: its result as the ledger stored it (the bytes that were
published), now or as soon as it is spent (CONTRACT.md, `GET /commands/{command_id}`).

A waiting request holds no database connection: it registers an event under its command
id, looks at the ledger once, and sleeps until the ledger's announcement of that id
(`persistence.ledger_listener`, one connection per process) or its deadline wakes it,
then looks once more. While the listener is down, waiters look again every
`FALLBACK_LOOK_S` instead: slower answers, never lost ones.

A database that does not answer is waited out too: a look that fails transiently (the
`transient` rule the composition root gives, the consumers' own) counts as "no result
yet", and only if the last look of the wait failed is it `LedgerUnreachable`. A writer
that sent the command may also stop at the applier's announcement that it was answered
`temporarily_unavailable` (`stop_if_unavailable`): that answer spends nothing, so there
is nothing more to wait for.
"""

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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


class ResultUnavailable(Exception):
    """No result to wait for now: send the command again (same id) later."""


class LedgerUnreachable(ResultUnavailable):
    """The ledger could not be read, up to the end of the wait."""


class AnsweredUnavailable(ResultUnavailable):
    """The command was answered `temporarily_unavailable` (nothing applied, nothing
    spent)."""


@dataclass(eq=False)
class _Waiter:
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    unavailable: bool = False


class CommandResults:
    def __init__(
        self, engine: AsyncEngine, listen_url: str, *, transient: Callable[[BaseException], bool]
    ) -> None:
        self._engine = engine
        self._transient = transient
        self._waiting: dict[str, set[_Waiter]] = {}
        self._listener = LedgerListener(listen_url, self._spent, self._unavailable, self._wake_all)

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

    async def wait(
        self, command_id: str, timeout_s: float, *, stop_if_unavailable: bool = False
    ) -> StoredResult | None:
        """The result, as soon as it is stored and at most `timeout_s` from now; None if
        there is none by then. Raises `LedgerUnreachable` if the last look failed, and,
        with `stop_if_unavailable`, `AnsweredUnavailable` once the applier says so."""
        waiter = _Waiter()
        self._waiting.setdefault(command_id, set()).add(waiter)
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + timeout_s
            while True:
                # Registered before looking: an announcement between the look and the
                # sleep sets the event, and the sleep returns at once.
                failure: BaseException | None = None
                try:
                    found = await self.stored(command_id)
                except Exception as exc:
                    if not self._transient(exc):
                        raise
                    found, failure = None, exc
                if found is not None:
                    return found
                if waiter.unavailable and stop_if_unavailable:
                    raise AnsweredUnavailable(command_id)
                left = deadline - loop.time()
                if left <= 0:
                    if failure is not None:
                        raise LedgerUnreachable(str(failure)) from failure
                    return None
                if failure is not None or not self._listener.listening:
                    left = min(left, FALLBACK_LOOK_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.woken.wait(), left)
                waiter.woken.clear()
        finally:
            waiters = self._waiting.get(command_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[command_id]

    def _spent(self, command_ids: Iterable[str]) -> None:
        for command_id in command_ids:
            for waiter in self._waiting.get(command_id, ()):
                waiter.woken.set()

    def _unavailable(self, command_ids: Iterable[str]) -> None:
        for command_id in command_ids:
            for waiter in self._waiting.get(command_id, ()):
                waiter.unavailable = True
                waiter.woken.set()

    def _wake_all(self) -> None:
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.woken.set()
