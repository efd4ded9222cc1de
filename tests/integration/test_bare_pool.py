"""The bare asyncpg pool of the hottest reads (`persistence.bare_pool`), against the real
PostgreSQL: a read that was cancelled mid-statement does not give its connection back
(it may be mid-operation), and the next read is answered on a fresh one at once; a
connection the server ended while it was idle is replaced by the next read."""

import asyncio
import time

import pytest

from shopflow.persistence.bare_pool import BarePool
from shopflow.settings import Settings

BACKEND = "SELECT pg_backend_pid()"


async def _backend(pool: BarePool) -> int:
    row = await pool.fetchrow(BACKEND)
    assert row is not None
    return int(row[0])


async def test_a_cancelled_read_leaves_its_connection_out_of_the_pool(
    test_settings: Settings,
) -> None:
    pool = BarePool(test_settings.query_database_url, size=1)
    try:
        first = await _backend(pool)
        sleeping = asyncio.create_task(pool.fetchrow("SELECT pg_sleep(1.5)"))
        await asyncio.sleep(0.3)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        started = time.monotonic()
        second = await _backend(pool)
        assert time.monotonic() - started < 0.8  # not behind the sleep
        assert second != first
    finally:
        await pool.stop()
        # The ended connection's backend sleeps on until it notices: let it, so that
        # nothing of this role is left when the test database is dropped.
        await asyncio.sleep(1.5)


async def test_a_connection_the_server_ended_is_replaced_by_the_next_read(
    test_settings: Settings,
) -> None:
    pool = BarePool(test_settings.query_database_url, size=1)
    other = BarePool(test_settings.query_database_url, size=1)  # the same role's
    try:
        first = await _backend(pool)
        assert await other.fetchrow("SELECT pg_terminate_backend($1)", first) == (True,)
        await asyncio.sleep(0.2)  # its end reaches the client
        assert await _backend(pool) != first
    finally:
        await pool.stop()
        await other.stop()
