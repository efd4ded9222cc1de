"""Fault 6: the leader of a busy command partition SIGKILLed mid-stream, on a three-broker
KRaft cluster of its own on loopback (scripts/infra.sh with --brokers 3, state in
.infra/chaos-cluster, ports 29092-29097, 25432-25434 with Patroni's 25532-25534 and etcd's
25632-25633, 26379-26383 (Redis with Sentinel, for redis-sentinel-failover), each moved by
SHOPFLOW_CHAOS_CLUSTER_PORT_SHIFT if set), and started again.

Why: a Kafka shop runs three brokers, every topic with three replicas and
min.insync.replicas=2, every producer (the service's and those upstream) at acks=all.
A write acknowledged that way is on at least two brokers, so one broker that dies without
a controlled shutdown must cost nothing but time: no command lost (the new leader, taken
from the ISR, holds every acknowledged record), none applied twice (the producers resend
what the dead leader did not answer, idempotently; the consumers resume from the group's
committed offsets on the new leaders), and the order per key kept. The time is the stall:
the dead broker's partitions have no leader until the controller notices it is gone (no
heartbeat for broker.session.timeout.ms, 9 s by default) and elects another replica; if
the node was also the group coordinator (or the active KRaft controller), that moves too.

The dead broker is also in the ISR of every partition it followed (three replicas on three
nodes: all of them), so until it is fenced every acks=all write waits, not only those to
the partitions it led; and the group coordinator's offset commits with them.

Before the first kill: the run's topics must really have three replicas, take
min.insync.replicas=2 and refuse unclean leader elections (else the run would not test
what it claims: a problem in the report); then one probe topic per node, its one partition
led by that node, written one record after the other at acks=all, idempotently, like the
service's producers, for the whole fault. The stream is held (`Run.hold_stream`) until
the last killed node is back in every ISR. Each kill, spread over the stream (at
(i+1)/(kills+1) of it as planned, or later once the previous node is back in sync; left
out if the stream is over by then):
- waits until every replica of the run's topics, the probes and the group's offsets is in
  sync (a second broker out of the ISR would stop acks=all writes: another fault);
- finds the busiest partition of the run's points.charge topic (most records so far) and
  the node that leads it, and SIGKILLs that node (`infra.sh kill kafka-N`);
- measures the stall: from the death (the probes' last acknowledgement) until the
  metadata shows the partition with a new leader, and until the probes are acknowledged
  again (on the partition the node led and on those it followed);
- starts it again (`infra.sh up kafka` starts only the dead node) and measures how long
  until it is back in the ISR of that partition, and in every ISR.
The figures go in the run's notes.

The fault's own clients (the metadata, offsets and configs it watches, `__consumer_offsets`
among them, and the probe topics it creates, writes and deletes) are the Kafka admin's:
an operator's instruments, outside the contract's table, which only the super user may
use. The driver has waited for the three brokers before creating the run's topics
(scripts/infra.sh's readiness probe cannot authenticate, so it does not count them).
"""

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from shopflow.contracts.principals import ADMIN
from shopflow.contracts.topics import POINTS_CHARGE, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.kafka_admin import planned_topics
from shopflow.producers.kafka_connection import KafkaConnection
from tests.chaos.driver import Fault, Run
from tests.chaos.servers import REPO, ChaosServers

BROKERS = 3
PG_NODES = 3  # PostgreSQL under Patroni beside the brokers (tests/chaos/postgres_cluster.py)
REPLICAS = 3
MIN_INSYNC = 2
MIN_INSYNC_REPLICAS = "min.insync.replicas"
UNCLEAN_ELECTION = "unclean.leader.election.enable"
OFFSETS_TOPIC = "__consumer_offsets"  # the group coordinator leads its partition

POLL_S = 0.1
# One question to the cluster (a dead broker may be the one asked). Not less: with a
# tenth of the stream over HTTP the driver's loop was late by 1-3 s at p99 on a busy
# machine, a question often took over 3 s, and one cut off at 3 s and asked again from
# scratch never got its answer ("no end offsets ... in 30.0 s", twice in make chaos).
ASK_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 30.0  # the run's topics all listed, with their replicas
LEADER_TIMEOUT_S = 90.0  # a new leader, and the probe acknowledged again
IN_SYNC_TIMEOUT_S = 180.0  # the restarted node back in every ISR
PROBE_PAUSE_S = 0.05  # between one probe acknowledgement and the next send

# DescribeConfigs (v1 and later) config_source codes.
CONFIG_SOURCES = {
    1: "a topic config",
    2: "a broker's dynamic config",
    3: "the cluster's dynamic default",
    4: "server.properties",
    5: "Kafka's default",
}

T = TypeVar("T")


def cluster_servers() -> ChaosServers:
    """A self-contained three-broker instance, with PostgreSQL as three nodes under
    Patroni: its own state dir and ports, so it runs beside the default servers and the
    single-broker chaos servers. On a machine where
    other servers hold those ports (another checkout's `make up` on 29092, say),
    SHOPFLOW_CHAOS_CLUSTER_PORT_SHIFT=N moves every one of them by N."""
    shift = int(os.environ.get("SHOPFLOW_CHAOS_CLUSTER_PORT_SHIFT", "0"))
    return ChaosServers(
        state_dir=REPO / ".infra" / "chaos-cluster",
        kafka_port=29092 + shift,
        kafka_controller_port=29093 + shift,
        pg_port=25432 + shift,
        redis_port=26379 + shift,
        brokers=BROKERS,
        pg_nodes=PG_NODES,
        redis_sentinel=True,  # 26379-26383, for redis-sentinel-failover (sentinel_fault.py)
    )


@dataclass(frozen=True)
class Replicas:
    """One partition as the metadata shows it."""

    leader: int  # -1 while it has none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


Partitions = dict[tuple[str, int], Replicas]


class Cluster:
    """The cluster's metadata and offsets, asked of whichever broker answers, as `kafka`'s
    principal (the admin: it describes every topic, the internal ones too)."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.admin = kafka.admin()
        self.consumer = kafka.consumer(enable_auto_commit=False)

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topics: list[str]) -> Partitions:
        """Every partition of the listed `topics` (a topic the broker asked does not
        list yet is left out)."""
        found: Partitions = {}
        for topic in await self.admin.describe_topics(topics):
            if topic["error_code"]:
                continue
            for p in topic["partitions"]:
                found[topic["topic"], p["partition"]] = Replicas(
                    p["leader"], tuple(p["replicas"]), tuple(p["isr"])
                )
        return found

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        tps = [TopicPartition(topic, p) for p in partitions]
        offsets: dict[TopicPartition, int] = await self.consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}

    async def topic_configs(self, topics: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
        """Per topic, per config name: (value, source) as the brokers apply it."""
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(names)) for t in topics
        ]
        found: dict[str, dict[str, Any]] = {}
        for response in await self.admin.describe_configs(resources):
            for error_code, error_message, _, topic, entries in response.resources:
                if error_code:
                    raise KafkaError(f"describing {topic}: [{error_code}] {error_message}")
                found[topic] = {entry[0]: (entry[1], entry[3]) for entry in entries}
        return found


async def _answer_within(ask: Callable[[], Awaitable[T | None]], timeout: float) -> T | None:
    """Ask every POLL_S until `ask` returns something, for up to `timeout` s; a question
    that fails (the broker asked is down) or takes over ASK_TIMEOUT_S counts as nothing.
    Not tests.support.waiting.until: this returns the answer, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                found = await ask()
        except (KafkaError, TimeoutError, OSError):
            found = None
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(POLL_S)


async def _replication_problems(cluster: Cluster, run: Run) -> list[str]:
    """What keeps the run's topics from being what the fault is about: three replicas
    per partition, min.insync.replicas=2, no unclean leader election."""
    problems = []
    if run.settings.replication_factor != REPLICAS:
        problems.append(
            f"the run's settings ask for replication factor {run.settings.replication_factor}, "
            f"not {REPLICAS}"
        )
    plan = planned_topics(run.settings)
    names = list(plan)

    async def all_listed() -> Partitions | None:
        found = await cluster.partitions(names)
        listed = {topic for topic, _ in found}
        return found if listed == set(names) else None

    partitions = await _answer_within(all_listed, CHECK_TIMEOUT_S)
    if partitions is None:
        return [*problems, f"the metadata did not list all the run's topics in {CHECK_TIMEOUT_S} s"]
    for name in names:
        short = sorted(
            p for (t, p), r in partitions.items() if t == name and len(r.replicas) != REPLICAS
        )
        if short:
            counts = sorted({len(partitions[name, p].replicas) for p in short})
            problems.append(
                f"topic {name}: partitions {short} have {counts} replicas, not {REPLICAS}"
            )
    configs = await _answer_within(
        lambda: cluster.topic_configs(names, [MIN_INSYNC_REPLICAS, UNCLEAN_ELECTION]),
        CHECK_TIMEOUT_S,
    )
    if configs is None:
        return [*problems, "the brokers did not describe the run's topics' configs"]
    sources = set()
    for name in names:
        entries = configs.get(name, {})
        min_insync, source = entries.get(MIN_INSYNC_REPLICAS, (None, None))
        sources.add(CONFIG_SOURCES.get(source, f"config source {source}"))
        if min_insync != str(MIN_INSYNC):
            problems.append(
                f"topic {name}: {MIN_INSYNC_REPLICAS} is {min_insync}, not {MIN_INSYNC}"
            )
        unclean, _ = entries.get(UNCLEAN_ELECTION, (None, None))
        if unclean != "false":
            problems.append(f"topic {name}: {UNCLEAN_ELECTION} is {unclean}, not false")
    if not problems:
        run.notes.append(
            f"all {len(names)} topics: {REPLICAS} replicas per partition, "
            f"{MIN_INSYNC_REPLICAS}={MIN_INSYNC} (from {', '.join(sorted(sources))}), "
            f"no unclean leader election"
        )
    return problems


async def _whole(cluster: Cluster, topics: list[str]) -> Partitions | None:
    """The partitions of `topics` when every one has all its replicas in sync and a
    leader; else None."""
    found = await cluster.partitions(topics)
    if {t for t, _ in found} != set(topics):
        return None
    if all(r.leader >= 0 and set(r.isr) == set(r.replicas) for r in found.values()):
        return found
    return None


class Probe:
    """Writes one record after the other to a partition of its own (acks=all,
    idempotent, as the service's producers) and keeps when each was acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.topic = topic
        self._producer = producer
        self.acks: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write(self) -> None:
        while True:
            try:
                await self._producer.send_and_wait(self.topic, b"probe", partition=0)
            except KafkaError:
                self.failures += 1  # the batch expired: the next send tries again
            else:
                self.acks.append(time.monotonic())
            await asyncio.sleep(PROBE_PAUSE_S)

    def last_before(self, moment: float) -> float | None:
        return next((a for a in reversed(self.acks) if a <= moment), None)

    def first_after(self, moment: float) -> float | None:
        return next((a for a in self.acks if a > moment), None)

    def gap_around(self, moment: float) -> float | None:
        """From the last acknowledgement before `moment` to the first after it."""
        before, after = self.last_before(moment), self.first_after(moment)
        return None if before is None or after is None else after - before


async def _start_probes(cluster: Cluster, producer: AIOKafkaProducer, prefix: str) -> list[Probe]:
    """A probe topic per node, its one partition led by that node (the first replica),
    each written without pause from now on."""
    nodes = list(range(1, BROKERS + 1))
    names = {n: f"{prefix}chaos.probe-led-by-{n}" for n in nodes}
    await cluster.admin.create_topics(
        [
            NewTopic(name, -1, -1, {0: [n, *(m for m in nodes if m != n)]})
            for n, name in names.items()
        ]
    )
    probes = [Probe(producer, name) for name in names.values()]
    began = time.monotonic()
    for probe in probes:
        probe.start()

    async def all_written() -> bool | None:
        return True if all(p.first_after(began) for p in probes) else None

    if await _answer_within(all_written, LEADER_TIMEOUT_S) is None:
        raise RuntimeError(f"the probe topics took no write in {LEADER_TIMEOUT_S} s")
    return probes


async def _busiest(run: Run, cluster: Cluster, topic: str, partitions: list[int]) -> int:
    """The partition of `topic` with the most records so far (the lowest on a tie); the
    first, said so in the notes, when its end offsets are not to be had (on a loaded
    machine they went unanswered for 30 s in 2 of 6 runs of 2026-12-07, and the run
    ended there, with no kill: any partition's leader is as good a victim)."""
    offsets = await _answer_within(lambda: cluster.end_offsets(topic, partitions), CHECK_TIMEOUT_S)
    if not offsets:
        run.notes.append(
            f"no end offsets of {topic} in {CHECK_TIMEOUT_S} s: its partition "
            f"{partitions[0]} taken as the busiest"
        )
        return partitions[0]
    return min(offsets, key=lambda p: (-offsets[p], p))


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


async def _kill_leader(
    run: Run, cluster: Cluster, probes: list[Probe], number: int, watched: list[str]
) -> None:
    """One kill of the leader of the busiest points.charge partition, its stall, the
    restart and the return to the ISR, measured into `run.notes`."""
    charge = Topics(run.settings.topic_prefix).name(POINTS_CHARGE)
    partitions = await _answer_within(lambda: _whole(cluster, watched), IN_SYNC_TIMEOUT_S)
    if partitions is None:
        raise RuntimeError(f"kill {number}: the cluster not in sync in {IN_SYNC_TIMEOUT_S} s")
    busy = await _busiest(run, cluster, charge, sorted(p for t, p in partitions if t == charge))
    victim = partitions[charge, busy].leader
    led = [p for p in probes if partitions[p.topic, 0].leader == victim]
    followed = [p for p in probes if partitions[p.topic, 0].leader != victim]
    roles = [f"leader of {sum(r.leader == victim for r in partitions.values())} partitions"]
    if any(r.leader == victim for (t, _), r in partitions.items() if t == OFFSETS_TOPIC):
        roles.append(f"group coordinator: it leads {OFFSETS_TOPIC}")

    sent = run.sent
    began = time.monotonic()
    run.mark("kill")
    await run.servers.kill(f"kafka-{victim}")
    killed = time.monotonic()
    # Every partition has the victim in its ISR: every probe's writes stop when it dies,
    # so the last acknowledgement before `killed` dates the death (infra.sh takes a while).
    died = max([began, *(a for p in probes if (a := p.last_before(killed)) is not None)])

    async def new_leader() -> Replicas | None:
        state = (await cluster.partitions([charge])).get((charge, busy))
        return state if state is not None and state.leader not in (-1, victim) else None

    elected = await _answer_within(new_leader, LEADER_TIMEOUT_S)
    leader_s = time.monotonic() - died if elected else None

    async def all_written() -> bool | None:
        return True if all(p.first_after(killed) for p in probes) else None

    if elected is None:
        run.problems.append(
            f"kill {number}: {charge}[{busy}] had no new leader {LEADER_TIMEOUT_S} s after "
            f"node {victim} was killed"
        )
    if await _answer_within(all_written, LEADER_TIMEOUT_S) is None:
        run.problems.append(
            f"kill {number}: acks=all writes not acknowledged again {LEADER_TIMEOUT_S} s "
            f"after node {victim} was killed"
        )
    led_gap = max((g for p in led if (g := p.gap_around(killed)) is not None), default=None)
    followed_gap = max(
        (g for p in followed if (g := p.gap_around(killed)) is not None), default=None
    )
    expired = sum(p.failures for p in probes)
    run.notes.append(
        f"kill {number}: node {victim} ({', '.join(roles)}) SIGKILLed after {sent} records "
        f"of the stream ({run.total} planned; infra.sh kill took {killed - began:.1f} s); "
        f"{charge}[{busy}] without a leader for {_seconds(leader_s)}, then led by node "
        f"{elected.leader if elected else '?'} (ISR {list(elected.isr) if elected else '?'}); "
        f"acks=all writes stalled {_seconds(led_gap)} on a partition the node led, "
        f"{_seconds(followed_gap)} on one it followed ({expired} probe sends expired so far)"
    )

    restarting = time.monotonic()

    async def restart() -> float:
        await run.servers.up("kafka")  # starts only the dead node
        return time.monotonic() - restarting

    restarted = asyncio.create_task(restart())

    async def in_isr() -> Replicas | None:
        if restarted.done():
            restarted.result()  # infra.sh failed: stop the run
        state = (await cluster.partitions([charge])).get((charge, busy))
        return state if state is not None and victim in state.isr else None

    try:
        rejoined = await _answer_within(in_isr, IN_SYNC_TIMEOUT_S)
        isr_s = time.monotonic() - restarting
        up_s = await restarted
    finally:
        if not restarted.done():
            restarted.cancel()
    whole = await _answer_within(lambda: _whole(cluster, watched), IN_SYNC_TIMEOUT_S)
    whole_s = time.monotonic() - restarting
    if rejoined is None or whole is None:
        run.problems.append(
            f"kill {number}: node {victim} not back in every ISR {IN_SYNC_TIMEOUT_S} s after "
            "its restart began"
        )
    run.notes.append(
        f"kill {number}: node {victim} restarted {restarting - died:.1f} s after it died "
        f"(infra.sh up kafka took {up_s:.1f} s), back in the ISR of {charge}[{busy}] "
        f"{isr_s:.1f} s after the restart began ({isr_s + restarting - died:.1f} s after it "
        f"died), in every ISR after {whole_s:.1f} s; {charge}[{busy}] led by node "
        f"{rejoined.leader if rejoined else '?'}"
    )


def leader_kill(kills: int) -> Fault:
    """`kills` times, spread over the stream: SIGKILL the node leading the busiest
    points.charge partition, measure the stall, start it again and measure its return to
    the ISR. The stream goes on until the last node is back in every ISR (as far as the
    driver lets it grow); a kill that would come after the stream is left out, and said
    so in the notes."""

    async def inject(run: Run) -> int:
        # Every kill mid-stream, and the stream on until the cluster is whole: held from
        # the first moment, before the seconds its admin client and probes take to start
        # on a busy machine, in which a short stream (`make test`'s) could end unkilled.
        run.hold_stream = True
        admin = kafka_connection(run.settings, ADMIN)
        cluster = Cluster(admin)
        producer = admin.producer(
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            request_timeout_ms=30_000,
        )
        try:
            await cluster.start()
            await producer.start()
        except BaseException:
            run.hold_stream = False
            raise
        probes: list[Probe] = []
        done = 0
        try:
            run.problems.extend(await _replication_problems(cluster, run))
            probes = await _start_probes(cluster, producer, run.settings.topic_prefix)
            watched = [*planned_topics(run.settings), OFFSETS_TOPIC, *(p.topic for p in probes)]
            for i in range(kills):
                await run.until_sent((i + 1) / (kills + 1))
                if not run.streaming:
                    run.notes.append(
                        f"kill {i + 1} of {kills} left out: the stream was over (at "
                        f"{run.sent} records) before the cluster was whole again"
                    )
                    break
                await _kill_leader(run, cluster, probes, i + 1, watched)
                done += 1
        finally:
            run.hold_stream = False
            for probe in probes:
                await probe.stop()
            with contextlib.suppress(KafkaError, TimeoutError):
                async with asyncio.timeout(ASK_TIMEOUT_S * 3):
                    await cluster.admin.delete_topics([p.topic for p in probes])
            await producer.stop()
            await cluster.close()
        return done

    return inject
