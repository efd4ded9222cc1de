"""A pool's connections while the database refuses them (`persistence.database.Opener`):
one attempt at a time, at most one per pause, the other callers failing at once with an
error the service waits out; with the database up, attempts side by side."""

import asyncio
from typing import Any

import pytest

from shopflow.consumers.failures import is_transient
from shopflow.persistence import database
from shopflow.persistence.database import DatabaseAway, Opener

PAUSE_S = 0.2


class FakeDatabase:
    """`database.connect`, counted: refuses while `up` is False, and takes `delay_s`."""

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0
        self.delay_s = 0.0

    async def connect(self, _options: dict[str, Any], *, host_timeout_s: float) -> object:
        self.attempts += 1
        await asyncio.sleep(self.delay_s)
        if not self.up:
            raise ConnectionRefusedError("no host is the primary")
        return object()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDatabase:
    fake = FakeDatabase()
    monkeypatch.setattr(database, "connect", fake.connect)
    return fake


def _opener() -> Opener:
    return Opener({}, host_timeout_s=1.0, pause_s=PAUSE_S)


async def test_after_a_refusal_callers_fail_at_once_until_the_pause_is_over(
    fake: FakeDatabase,
) -> None:
    opener = _opener()
    with pytest.raises(ConnectionRefusedError):
        await opener.open()
    for _ in range(100):
        with pytest.raises(DatabaseAway, match="no host is the primary"):
            await opener.open()
    assert fake.attempts == 1
    await asyncio.sleep(PAUSE_S * 1.5)
    fake.up = True
    assert await opener.open() is not None
    assert fake.attempts == 2


async def test_while_refused_one_attempt_at_a_time(fake: FakeDatabase) -> None:
    opener = _opener()
    with pytest.raises(ConnectionRefusedError):
        await opener.open()
    await asyncio.sleep(PAUSE_S * 1.5)
    fake.delay_s = 0.1
    outcomes = await asyncio.gather(*(opener.open() for _ in range(20)), return_exceptions=True)
    assert fake.attempts == 2
    assert sum(isinstance(o, ConnectionRefusedError) for o in outcomes) == 1
    assert sum(isinstance(o, DatabaseAway) for o in outcomes) == 19


async def test_with_the_database_up_attempts_run_side_by_side(fake: FakeDatabase) -> None:
    opener = _opener()
    fake.up = True
    fake.delay_s = 0.05
    opened = await asyncio.gather(*(opener.open() for _ in range(10)))
    assert len(opened) == 10
    assert fake.attempts == 10


async def test_a_success_ends_the_pauses(fake: FakeDatabase) -> None:
    opener = _opener()
    with pytest.raises(ConnectionRefusedError):
        await opener.open()
    await asyncio.sleep(PAUSE_S * 1.5)
    fake.up = True
    await opener.open()
    fake.up = False
    with pytest.raises(ConnectionRefusedError):  # tried at once: no pause was running
        await opener.open()
    assert fake.attempts == 3


def test_a_caller_turned_away_waits_it_out_as_it_would_the_refusal() -> None:
    assert is_transient(DatabaseAway("the database refused the last connection"))
