"""The faults of the suite, each with its size in `make test` (FAST) and in `make chaos`
(LONG), and the table of their reports."""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tests.chaos import faults
from tests.chaos.driver import Fault, Report, run
from tests.chaos.servers import ChaosServers


class Scale(StrEnum):
    FAST = "fast"
    LONG = "long"


@dataclass(frozen=True)
class Plan:
    """A fault at one scale: how many commands, at what rate, and how often it strikes."""

    fault: Fault
    commands: int
    rate: int
    workers: int = 2


FAULTS: dict[str, Callable[[Scale], Plan]] = {
    "worker-kill": lambda s: Plan(
        faults.worker_kills(4 if s is Scale.FAST else 24),
        *((4000, 250) if s is Scale.FAST else (30_000, 200)),
    ),
    "sigterm": lambda s: Plan(
        faults.sigterm(1 if s is Scale.FAST else 5),
        *((1000, 250) if s is Scale.FAST else (12_000, 300)),
    ),
    "rebalance": lambda s: Plan(
        faults.rebalance(), *((1500, 250) if s is Scale.FAST else (12_000, 300))
    ),
    "postgres-restart": lambda s: Plan(
        faults.postgres_restart(1 if s is Scale.FAST else 3),
        *((1000, 250) if s is Scale.FAST else (12_000, 300)),
    ),
    "broker-restart": lambda s: Plan(
        faults.broker_restart(1 if s is Scale.FAST else 2),
        *((1000, 250) if s is Scale.FAST else (12_000, 300)),
    ),
}


async def run_fault(
    name: str, scale: Scale, *, seed: int | None = None, servers: ChaosServers | None = None
) -> tuple[Report, ChaosServers]:
    servers = servers or ChaosServers()
    await servers.up()
    plan = FAULTS[name](scale)
    report = await run(
        name,
        plan.fault,
        servers,
        commands=plan.commands,
        rate=plan.rate,
        workers=plan.workers,
        seed=seed,
    )
    return report, servers


def table(reports: list[Report]) -> str:
    rows = [
        "| fault | commands sent | faults injected | lost | applied twice | longest wait "
        "| p99 wait | sent again after `temporarily_unavailable` |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        rows.append(
            f"| {r.fault} | {r.records:,} ({r.commands:,} distinct, {r.poison} poison) "
            f"| {r.faults} | {r.lost} | {r.applied_twice} | {r.longest_wait_s:.2f} s "
            f"| {r.p99_wait_s:.2f} s | {r.resent} |"
        )
    return "\n".join(rows)
