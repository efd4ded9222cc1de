"""The fast run of every fault (`make test`); `make chaos` runs the long one.

Each test sends a stream of mixed commands (duplicates and poison among them) while its
fault strikes, and fails on anything `tests.chaos.driver` finds: a command without an
outcome or with two, a poison record without its dead letter, an outcome out of key
order, a broken invariant, a row the model does not expect, an answer over HTTP
whose event id is not the one on the result topic. The servers are the chaos
instance of scripts/infra.sh (its own ports and state), stopped after the session.
"""

from collections.abc import AsyncIterator

import pytest

from tests.chaos.servers import ChaosServers
from tests.chaos.suite import FAULTS, Scale, run_fault

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
async def chaos_instances() -> AsyncIterator[dict[str, ChaosServers]]:
    """The servers each fault runs on, started on first use and stopped at the end."""
    started: dict[str, ChaosServers] = {}
    yield started
    for servers in started.values():
        await servers.down()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_loses_nothing_and_applies_nothing_twice(
    fault: str, chaos_instances: dict[str, ChaosServers]
) -> None:
    plan = FAULTS[fault]
    servers = chaos_instances.setdefault(str(plan.servers().state_dir), plan.servers())
    report, _ = await run_fault(fault, Scale.FAST, servers=servers)

    assert report.problems == [], report.line()
    assert report.lost == 0
    assert report.applied_twice == 0
    assert report.faults >= plan.fast.strikes, report.line()
    assert report.commands > 0
    assert report.poison > 0
    assert report.http_commands > 0
    assert report.http_matched == report.http_answers > 0
    assert report.probes.queries_answered > 0
    assert report.probes.writes_acknowledged > 0
