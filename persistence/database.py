"""Engine construction (never at import time: the composition root and tests build their own)."""

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    # READ COMMITTED (PostgreSQL's default) on purpose: concurrent commands are kept
    # apart by row locks taken in a fixed order and by guarded updates, not by
    # serializable snapshots that would fail and retry under contention.
    # No pool_pre_ping: it costs a round trip per checkout (per batch). A connection
    # that died with its server fails its batch with an error that `consumers.failures`
    # calls transient; SQLAlchemy discards it, and the retry gets a fresh one.
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )
