"""What became of a command: its result as the ledger stored it (the bytes that were
published), now or as soon as it is spent (CONTRACT.md, `GET /commands/{command_id}`).

A waiting request holds no database connection: it registers an event under its command
id (`watching`), looks at the ledger, and sleeps until the ledger's announcement of that
id (`persistence.ledger_listener`, one connection per process) or its deadline wakes it,
then looks once more. While the listener is down, waiters look again every
`FALLBACK_LOOK_S` instead: slower answers, never lost ones. A writer registers before its
first look and sends between that look and the sleep, so one look serves as both its
check before sending and the wait's own.

A look is one prepared `SELECT` by primary key on a small bare asyncpg pool
(`persistence.bare_pool`): SQLAlchemy's ORM-free path still cost 440-620 µs of CPU a
look against about 45 µs by bare asyncpg (py-spy under `make bench`'s HTTP writes), and a
write looks twice.

A database that does not answer is waited out too: a look that fails transiently (the
`transient` rule the composition root gives, the consumers' own) counts as "no result
yet", and only if the last look of the wait failed is it `LedgerUnreachable`. A writer
that sent the command may also stop at the applier's announcement that it was answered
`temporarily_unavailable` (`stop_if_unavailable`): that answer spends nothing, so there
is nothing more to wait for.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from shopflow.persistence.bare_pool import BarePool
from shopflow.persistence.ledger_listener import LedgerListener

FALLBACK_LOOK_S = 1.0

_STORED = (
    "SELECT command_type, entity_key, result_json, payload_sha256"
    " FROM processed_commands WHERE command_id = $1"
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
        self,
        database_url: str,
        *,
        pool_size: int,
        transient: Callable[[BaseException], bool],
        connect_timeout_s: float = 5.0,
    ) -> None:
        """`database_url`: SQLAlchemy's URL of the role that reads the ledger (and
        listens), on the primary; `pool_size`: the most connections the looks hold at once."""
        self._pool = BarePool(
            database_url,
            size=pool_size,
            connect_timeout_s=connect_timeout_s,
        )
        self._started = False
        self._transient = transient
        self._waiting: dict[str, set[_Waiter]] = {}
        self._listener = LedgerListener(
            database_url, self._spent, self._unavailable, self._wake_all
        )

    async def start(self) -> None:
        # No connection yet: a database away at start is waited out later, look by look,
        # as it is at any other time.
        await self._pool.start()
        self._started = True
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        await self._pool.stop()
        self._started = False

    async def wait_listening(self, timeout_s: float) -> bool:
        return await self._listener.wait_listening(timeout_s)

    async def stored(self, command_id: str) -> StoredResult | None:
        if not self._started:
            raise RuntimeError("CommandResults.start() first")
        row = await self._pool.fetchrow(_STORED, command_id)
        if row is None:
            return None
        return StoredResult(row[0], row[1], row[2], bytes(row[3]))

    @contextlib.asynccontextmanager
    async def watching(self, command_id: str) -> AsyncIterator["Watch"]:
        """`command_id` watched for as long as the block lasts: no announcement of it
        after this is missed."""
        waiter = _Waiter()
        self._waiting.setdefault(command_id, set()).add(waiter)
        try:
            yield Watch(self, command_id, waiter)
        finally:
            waiters = self._waiting.get(command_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[command_id]

    async def wait(self, command_id: str, timeout_s: float) -> StoredResult | None:
        """The result, as soon as it is stored and at most `timeout_s` from now; None if
        there is none by then; `LedgerUnreachable` if the last look failed."""
        async with self.watching(command_id) as watch:
            return await watch.until(timeout_s)

    async def _look(self, command_id: str) -> tuple[StoredResult | None, BaseException | None]:
        """The result, or None; and the transient failure of the look, if it failed."""
        try:
            return await self.stored(command_id), None
        except Exception as exc:
            if not self._transient(exc):
                raise
            return None, exc

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

    @property
    def _listening(self) -> bool:
        return self._listener.listening


class Watch:
    """One command id, watched (`CommandResults.watching`)."""

    def __init__(self, results: CommandResults, command_id: str, waiter: _Waiter) -> None:
        self._results = results
        self._command_id = command_id
        self._waiter = waiter

    async def look(self) -> StoredResult | None:
        """The result now, or None; `LedgerUnreachable` if the ledger cannot be read."""
        found, failure = await self._results._look(self._command_id)
        if failure is not None:
            raise LedgerUnreachable(str(failure)) from failure
        return found

    async def until(
        self, timeout_s: float, *, looked: bool = False, stop_if_unavailable: bool = False
    ) -> StoredResult | None:
        """The result, as soon as it is stored and at most `timeout_s` from now; None if
        there is none by then. `looked`: a look since watching began found nothing, so
        sleep first. Raises `LedgerUnreachable` if the last look failed, and, with
        `stop_if_unavailable`, `AnsweredUnavailable` once the applier says so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        failure: BaseException | None = None
        while True:
            if not looked:
                found, failure = await self._results._look(self._command_id)
                if found is not None:
                    return found
            looked = False
            if self._waiter.unavailable and stop_if_unavailable:
                raise AnsweredUnavailable(self._command_id)
            left = deadline - loop.time()
            if left <= 0:
                if failure is not None:
                    raise LedgerUnreachable(str(failure)) from failure
                return None
            if failure is not None or not self._results._listening:
                left = min(left, FALLBACK_LOOK_S)
            # Registered before any look: an announcement since then has set the event,
            # and this returns at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._waiter.woken.wait(), left)
            self._waiter.woken.clear()
