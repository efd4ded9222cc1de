"""A bare asyncpg pool beside the engines, for the one-statement reads on the hottest
paths: the HTTP side's product and balance reads (`queries.read_model`) and the ledger's
looks (`queries.command_results`).

Why not the engine's pool: checking a connection out of SQLAlchemy's pool and back (its
greenlet bridge, its reset) cost about 75 µs of CPU a read, twice what asyncpg spends on
the read itself (in-process, 32 tasks, 2026-12-08: 112-119 µs a product read through the
engine's connection, 37-38 µs by this pool).

Its connections are opened as every other pool's (`persistence.database.Opener`), none
before the first read (a database away at start is waited out read by read, as at any
other time). They go back to the pool as they are: a read leaves no session state behind
(one statement outside a transaction), and asyncpg's default reset on release is a round
trip of its own (RESET ALL, UNLISTEN, ...), 60 against 38 µs a read. So a read that
fails, or is cancelled, does not give its connection back: it may be mid-operation, and
the next read on it would fail for that."""

import asyncio

import asyncpg

from shopflow.persistence.database import Opener, asyncpg_connect_args

# A pool with no free connection by then: the read failed (TimeoutError, transient, 503
# on the HTTP side), as SQLAlchemy's pool fails after its own timeout.
ACQUIRE_TIMEOUT_S = 5.0


class BarePool:
    def __init__(
        self,
        database_url: str,
        *,
        size: int,
        connect_timeout_s: float = 5.0,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        """`database_url`: SQLAlchemy's URL (`asyncpg_connect_args`); `size`: the most
        connections held at once; `acquire_timeout_s`: how long a read may wait for one."""
        self._opener = Opener(asyncpg_connect_args(database_url), host_timeout_s=connect_timeout_s)
        self._size = size
        self._acquire_timeout_s = acquire_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Makes the pool (no connection yet); the first read does it if nobody has."""
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._size,
                    reset=_nothing_to_reset,
                    connect=self._connect,
                )

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def fetchrow(self, sql: str, *arguments: object) -> asyncpg.Record | None:
        if self._pool is None:
            await self.start()
            assert self._pool is not None
        async with self._pool.acquire(timeout=self._acquire_timeout_s) as connection:
            try:
                row: asyncpg.Record | None = await connection.fetchrow(sql, *arguments)
            except BaseException:
                connection.terminate()  # not back into the pool as it is (above)
                raise
        return row

    async def _connect(self, *_: object, **__: object) -> asyncpg.Connection:
        """The pool's connections, by the Opener; the pool's own arguments are its
        defaults."""
        return await self._opener.open()


async def _nothing_to_reset(_: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is (the module's docstring)."""
