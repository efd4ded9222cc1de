"""Engine construction (never at import time: the composition root and tests build their own),
and the connection arguments of the bare asyncpg connections beside the engines.

A database URL may name several hosts, for a replicated PostgreSQL (scripts/infra.sh with
SHOPFLOW_PG_NODES=3, Patroni): SQLAlchemy's form for asyncpg,
`postgresql+asyncpg://user@/db?host=h1:5432&host=h2:5432&target_session_attrs=read-write`.
The hosts are tried in turn, and the first whose session matches `target_session_attrs`
is kept (`read-write`: the primary; `prefer-standby`: a standby, else any). The arguments
are the ones the engine's own dialect makes of the URL (`asyncpg_connect_args`), and every
connection, the engines' and the bare asyncpg ones' (the ledger's looks, its listener), is
opened by `connect`: asyncpg's own walk over the hosts has one timeout for all of them,
so a host that swallows packets (cut off by a partition) would use it up before the next
host is tried; here each host gets the timeout of its own.
"""

import asyncio
from typing import Any, Final

import asyncpg
from sqlalchemy import event, make_url
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# 25006: read-only SQL transaction. The node is a standby now (demoted, or a standby the
# connection reached): a pooled connection to it will never write again.
_READ_ONLY: Final = "25006"


def create_engine(
    database_url: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0
) -> AsyncEngine:
    # READ COMMITTED (PostgreSQL's default) on purpose: concurrent commands are kept
    # apart by row locks taken in a fixed order and by guarded updates, not by
    # serializable snapshots that would fail and retry under contention.
    # No pool_pre_ping: it costs a round trip per checkout (per batch). A connection
    # that died with its server fails its batch with an error that `consumers.failures`
    # calls transient; SQLAlchemy discards it, and the retry gets a fresh one. So is one
    # to a node that became a standby (`_drop_read_only`): the retry connects again, and
    # `target_session_attrs` picks the new primary.
    # No statement timeout either, and no cancellation of a COMMIT: under synchronous
    # replication a cancelled wait for the standby leaves the commit in place, unreplicated.
    opener = Opener(asyncpg_connect_args(database_url), host_timeout_s=connect_timeout_s)
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        async_creator=opener.open,
    )
    event.listen(engine.sync_engine, "handle_error", _drop_read_only)
    return engine


def _drop_read_only(context: ExceptionContext) -> None:
    if getattr(context.original_exception, "sqlstate", None) == _READ_ONLY:
        context.is_disconnect = True


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """The keyword arguments of `asyncpg.connect` for a SQLAlchemy `postgresql+asyncpg://`
    URL: what the engine's own dialect makes of it (its hosts and ports, as lists when
    there are several; user, password, database; query parameters such as
    `target_session_attrs`)."""
    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    _, options = dialect.create_connect_args(make_url(database_url))  # type: ignore[no-untyped-call]
    return dict(options)


# What opening a connection raises while the database is away or changing its primary (no
# host up, none writable yet, a host starting or stopping): a caller that keeps a
# connection open for good (the ledger's listener) waits these out and tries again.
CONNECT_FAILURES: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# Why a host is passed over for the next: down or not answering in time (OSError, the
# timeout included), starting up or shutting down (57P03), or not the session wanted.
_NEXT_HOST: Final = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.TargetServerAttributeNotMatched,
)


async def connect(options: dict[str, Any], *, host_timeout_s: float) -> asyncpg.Connection:
    """A connection by `options` (`asyncpg_connect_args`), each host tried in turn with
    `host_timeout_s` of its own. `prefer-standby` looks for a standby on every host first,
    then takes any. The last host's error is raised when none will do."""
    hosts, ports = options.get("host"), options.get("port")
    if not isinstance(hosts, list) or not isinstance(ports, list):
        return await asyncpg.connect(**options, timeout=host_timeout_s)
    wanted = options.get("target_session_attrs") or "any"
    passes = ["standby", "any"] if wanted == "prefer-standby" else [wanted]
    failure: BaseException | None = None
    for session in passes:
        for host, port in zip(hosts, ports, strict=True):
            try:
                one_host = {**options, "host": host, "port": port, "target_session_attrs": session}
                return await asyncpg.connect(**one_host, timeout=host_timeout_s)
            except _NEXT_HOST as exc:
                failure = exc
    assert failure is not None
    raise failure


# While the database refuses connections, a pool tries again at most this often: a primary
# back (a failover's new one) is found this much later at worst.
REFUSED_PAUSE_S: Final = 0.25


class DatabaseAway(ConnectionError):
    """No connection attempted: the pool's last attempt was refused under `REFUSED_PAUSE_S`
    ago, or another is under way (`Opener`). Transient, as the refusal was."""


class Opener:
    """Opens one pool's connections (`connect`). While the database refuses them (every
    host down, or none is the session wanted: no primary yet in a failover), one attempt
    is let through at a time and at most one per `pause_s`; every other caller fails at
    once with `DatabaseAway`. Without it, each caller that finds no pooled connection opens
    one: a serve with hundreds of HTTP writes waiting out a failover, each looking at the
    ledger every second, keeps its pool's 32 slots opening connections (each a walk over
    the hosts and a SCRAM handshake with every standby) on the cores the database and the
    brokers need, and the more requests wait, the more it spends. With the database up,
    attempts run side by side."""

    def __init__(
        self, options: dict[str, Any], *, host_timeout_s: float, pause_s: float = REFUSED_PAUSE_S
    ) -> None:
        self._options = options
        self._host_timeout_s = host_timeout_s
        self._pause_s = pause_s
        self._refusal: BaseException | None = None  # the last attempt's, until one succeeds
        self._next_at = 0.0  # loop time before which no attempt is made while refused
        self._trying = False  # an attempt while refused is under way

    async def open(self) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        probing = self._refusal is not None
        if probing and (self._trying or loop.time() < self._next_at):
            raise DatabaseAway(f"the database refused the last connection: {self._refusal}")
        if probing:
            self._trying = True
        try:
            connection = await connect(self._options, host_timeout_s=self._host_timeout_s)
        except CONNECT_FAILURES as exc:
            self._refusal = exc
            self._next_at = loop.time() + self._pause_s
            raise
        finally:
            if probing:
                self._trying = False
        self._refusal = None
        return connection


def on_primary(database_url: str) -> str:
    """`database_url` held to the primary: its `target_session_attrs`, if it has one (a
    query URL that prefers standbys), made `read-write`. For what must see every commit at
    once and LISTEN (a standby can do neither): the ledger's looks and announcements."""
    url = make_url(database_url)
    if "target_session_attrs" not in url.query:
        return database_url
    return url.update_query_dict({"target_session_attrs": "read-write"}).render_as_string(
        hide_password=False
    )
