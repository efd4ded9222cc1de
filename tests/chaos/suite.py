"""The faults of the suite, each with its size in `make test` (FAST) and in `make chaos`
(LONG), and the table of their reports."""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tests.chaos import faults
from tests.chaos.cluster import cluster_servers, leader_kill
from tests.chaos.driver import Fault, Report, run
from tests.chaos.postgres_cluster import (
    postgres_failover,
    postgres_partition,
    postgres_replica_loss,
    postgres_switchover,
)
from tests.chaos.redis_fault import redis_outage
from tests.chaos.sentinel_fault import sentinel_failover
from tests.chaos.servers import ChaosServers


class Scale(StrEnum):
    FAST = "fast"
    LONG = "long"


@dataclass(frozen=True)
class Size:
    strikes: int  # how many times the fault strikes
    commands: int  # distinct commands in the stream
    rate: int  # records sent per second


@dataclass(frozen=True)
class Plan:
    """A fault, how big its fast and long runs are, and the servers it runs on."""

    make: Callable[[int], Fault]  # the fault, given how many times it strikes
    fast: Size
    long: Size
    servers: Callable[[], ChaosServers] = ChaosServers
    workers: int = 2

    def size(self, scale: Scale) -> Size:
        return self.fast if scale is Scale.FAST else self.long


FAULTS: dict[str, Plan] = {
    "worker-kill": Plan(faults.worker_kills, Size(4, 2000, 250), Size(24, 30_000, 200)),
    "sigterm": Plan(faults.sigterm, Size(1, 1000, 250), Size(5, 12_000, 300)),
    "rebalance": Plan(faults.rebalance, Size(2, 1500, 250), Size(6, 12_000, 300)),
    "postgres-restart": Plan(faults.postgres_restart, Size(2, 1500, 250), Size(4, 12_000, 300)),
    "broker-restart": Plan(faults.broker_restart, Size(1, 1000, 250), Size(2, 12_000, 300)),
    "cluster-leader-kill": Plan(
        leader_kill, Size(1, 1500, 250), Size(2, 6000, 300), servers=cluster_servers
    ),
    # The replicated instance with no fault: the waits the faults below are read against.
    "cluster-calm": Plan(
        faults.calm, Size(0, 1500, 250), Size(0, 12_000, 300), servers=cluster_servers
    ),
    # PostgreSQL as three nodes under Patroni (on the three-broker instance).
    "postgres-failover": Plan(
        postgres_failover, Size(1, 1500, 250), Size(3, 12_000, 300), servers=cluster_servers
    ),
    "postgres-switchover": Plan(
        postgres_switchover, Size(1, 1500, 250), Size(3, 12_000, 300), servers=cluster_servers
    ),
    "postgres-replica-loss": Plan(
        postgres_replica_loss, Size(1, 1500, 250), Size(2, 12_000, 300), servers=cluster_servers
    ),
    "postgres-partition": Plan(
        postgres_partition, Size(1, 1500, 250), Size(2, 12_000, 300), servers=cluster_servers
    ),
    # `shopflow serve` (started by the fault) takes a few seconds to answer.
    "redis-outage": Plan(lambda _: redis_outage(), Size(2, 4000, 250), Size(2, 12_000, 300)),
    # On the replicated instance (its Redis: a primary, a replica, three Sentinels).
    "redis-sentinel-failover": Plan(
        sentinel_failover, Size(1, 1500, 250), Size(2, 6000, 300), servers=cluster_servers
    ),
    # A serve takes 5-25 s to answer again on a busy 2-core machine: the stream is held
    # (grown) until it does.
    "serve-kill": Plan(faults.serve_kill, Size(1, 1500, 250), Size(3, 12_000, 300)),
}


async def run_fault(
    name: str, scale: Scale, *, seed: int | None = None, servers: ChaosServers | None = None
) -> tuple[Report, ChaosServers]:
    """The fault `name` at `scale`, on `servers` (its plan's own if None), started first."""
    plan = FAULTS[name]
    size = plan.size(scale)
    servers = servers or plan.servers()
    await servers.up()
    report = await run(
        name,
        plan.make(size.strikes),
        servers,
        commands=size.commands,
        rate=size.rate,
        workers=plan.workers,
        seed=seed,
    )
    return report, servers


def table(reports: list[Report]) -> str:
    rows = [
        "| fault | commands sent | faults injected | lost | applied twice | longest wait "
        "| p99 wait | sent again after `temporarily_unavailable` | graceful stops killed "
        "| over HTTP: commands (records) | HTTP retries: 503 / 202 / no answer / other "
        "| HTTP answers with the topic's `event_id` "
        "| GET queries: answered / not, longest without an answer "
        "| database writes: longest without one |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        retries = r.http_retries
        other = sum(n for cause, n in retries.items() if cause not in ("503", "202", "no answer"))
        rows.append(
            f"| {r.fault} | {r.records:,} ({r.commands:,} distinct, {r.poison} poison) "
            f"| {r.faults} | {r.lost} | {r.applied_twice} | {r.longest_wait_s:.2f} s "
            f"| {r.p99_wait_s:.2f} s | {r.resent} | {r.stuck_stops} "
            f"| {r.http_commands:,} ({r.http_records:,}) "
            f"| {retries.get('503', 0)} / {retries.get('202', 0)} / "
            f"{retries.get('no answer', 0)} / {other} "
            f"| {r.http_matched:,} of {r.http_answers:,} "
            f"| {r.probes.queries_answered:,} / {r.probes.queries_failed:,}, "
            f"{r.probes.longest_query_gap_s:.1f} s | {r.probes.longest_write_gap_s:.1f} s |"
        )
    return "\n".join(rows)
