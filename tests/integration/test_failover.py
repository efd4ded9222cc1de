"""Failover with the default session timeout, against the real servers: two `shopflow
worker` processes share the groups, one is SIGKILLed while charges keep coming, and no
command waits longer than 3 s for its result (issue: failover within 3 s)."""

from shopflow.settings import Settings
from tests.bench import failover
from tests.support.service import isolated

DEFAULT_SESSION_TIMEOUT_MS = Settings.model_fields["session_timeout_ms"].default


async def test_a_killed_workers_partitions_are_served_again_within_three_seconds(
    test_settings: Settings,
) -> None:
    settings = isolated(test_settings, "failover")

    measured = await failover.run(
        DEFAULT_SESSION_TIMEOUT_MS, rate=200, after_fault_s=5.0, settings=settings
    )

    # run() has checked that every command was answered, once in effect (same event id on
    # any repeat, balances moved by exactly what was sent).
    assert measured.answered == measured.sent
    assert measured.longest_wait_s <= 3.0, measured.line()
    assert measured.waited_over_3s == 0
