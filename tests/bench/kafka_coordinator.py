"""A broker's loss seen by consumer groups whose coordinator survives: do they keep their
members? (docs/measurements.md#kafka-leader-loss)

On the chaos suite's three-broker instance (tests/chaos/cluster.py; its Kafka only,
started and stopped here, SHOPFLOW_CHAOS_CLUSTER_PORT_SHIFT honoured): GROUPS groups of
PER_GROUP consumers (aiokafka, the service's 1.5 s sessions and 0.5 s heartbeats, a
commit after every batch as the offset lane does) on a 12-partition topic with three
replicas, fed at RATE records/s by an idempotent acks=all producer. Each trial SIGKILLs a
broker that is not the group coordinator, watches WATCH_S seconds, and says how many
consumers were given their partitions again (a rebalance), the longest gap in each
group's consumption and the producer's longest gap between acknowledgements; then starts
the node again and waits for every replica in sync.

    .venv/bin/python -m tests.bench.kafka_coordinator --trials 3
"""

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic

from shopflow.contracts.principals import ADMIN
from shopflow.kafka_access import kafka_connection
from tests.chaos.cluster import (
    BROKERS,
    IN_SYNC_TIMEOUT_S,
    OFFSETS_TOPIC,
    Cluster,
    _answer_within,
    cluster_servers,
)
from tests.chaos.cluster import _whole as whole

GROUPS = 8
PER_GROUP = 2
PARTITIONS = 12
RATE = 200  # records/s
WATCH_S = 15.0
SETTLE_S = 10.0  # after the consumers start, before the first kill


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, times: list[float]) -> None:
        self._times = times

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._times.append(time.monotonic())


@dataclass
class Member:
    group: int
    consumer: AIOKafkaConsumer
    assigned: list[float] = field(default_factory=list)
    batches: list[float] = field(default_factory=list)

    async def consume(self) -> None:
        while True:
            try:
                if await self.consumer.getmany(timeout_ms=100):
                    self.batches.append(time.monotonic())
                    await asyncio.wait_for(self.consumer.commit(), 10)
            except asyncio.CancelledError:
                raise
            except Exception:  # a rebalance, a coordinator away: the loop goes on
                await asyncio.sleep(0.1)


async def _produce(producer: AIOKafkaProducer, topic: str, acks: list[float]) -> None:
    pending: set[asyncio.Task[None]] = set()

    async def one(key: int) -> None:
        with contextlib.suppress(Exception):
            await (await producer.send(topic, b"x", key=str(key).encode()))
            acks.append(time.monotonic())

    key = 0
    while True:
        key += 1
        task = asyncio.create_task(one(key))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(1 / RATE)


def _longest_gap(times: list[float], since: float) -> float:
    recent = sorted(t for t in times if t > since)
    return max((b - a for a, b in itertools.pairwise(recent)), default=0.0)


async def run(trials: int, label: str) -> None:
    servers = cluster_servers()
    await servers.up("kafka")
    kafka = kafka_connection(servers.settings(f"bench-{label}"), ADMIN)
    cluster = Cluster(kafka)
    await cluster.start()
    topic = f"bench.coordinator.{label}.{int(time.time())}"
    await cluster.admin.create_topics([NewTopic(topic, PARTITIONS, BROKERS)])
    # Every partition led before the consumers subscribe: a consumer that finds the topic
    # missing looks again only with its next metadata refresh, minutes later.
    if await _answer_within(lambda: whole(cluster, [topic]), IN_SYNC_TIMEOUT_S) is None:
        raise RuntimeError(f"{topic} not in sync in {IN_SYNC_TIMEOUT_S} s")
    producer = kafka.producer(enable_idempotence=True, acks="all", linger_ms=2)
    await producer.start()
    members = []
    for g in range(GROUPS):
        for _ in range(PER_GROUP):
            consumer = kafka.consumer(
                group_id=f"bench-{label}-{g}",
                enable_auto_commit=False,
                session_timeout_ms=1500,
                heartbeat_interval_ms=500,
                auto_offset_reset="earliest",
            )
            member = Member(g, consumer)
            consumer.subscribe([topic], listener=_Assignments(member.assigned))
            await consumer.start()
            members.append(member)
    acks: list[float] = []
    tasks = [asyncio.create_task(_produce(producer, topic, acks))]
    tasks += [asyncio.create_task(m.consume()) for m in members]
    try:
        await asyncio.sleep(SETTLE_S)
        for trial in range(1, trials + 1):
            partitions = await _answer_within(
                lambda: whole(cluster, [topic, OFFSETS_TOPIC]), IN_SYNC_TIMEOUT_S
            )
            if partitions is None:
                raise RuntimeError(f"not in sync in {IN_SYNC_TIMEOUT_S} s")
            coordinator = partitions[OFFSETS_TOPIC, 0].leader
            victim = random.choice([n for n in range(1, BROKERS + 1) if n != coordinator])
            began = time.monotonic()
            await servers.kill(f"kafka-{victim}")
            died = max([began, *(a for a in acks if a <= time.monotonic())])
            await asyncio.sleep(WATCH_S)
            moved = sum(any(t > died for t in m.assigned) for m in members)
            gaps = [
                max(_longest_gap(m.batches, died - 5) for m in members if m.group == g)
                for g in range(GROUPS)
            ]
            print(
                f"{label} kill {trial}: node {victim} (coordinator {coordinator}); "
                f"{moved} of {len(members)} consumers given partitions again; longest gap in "
                f"a group's consumption {min(gaps):.1f}-{max(gaps):.1f} s (median "
                f"{statistics.median(gaps):.1f}); the producer's "
                f"{_longest_gap(acks, died - 5):.1f} s",
                flush=True,
            )
            await servers.up("kafka")
    finally:
        for task in tasks:
            task.cancel()
        # Not gathered: an aiokafka commit cancelled while its coordinator is away does
        # not always end (consumers.offset_lane leaves it behind too).
        await asyncio.wait(tasks, timeout=5)
        for m in members:
            await m.consumer.stop()
        await producer.stop()
        with contextlib.suppress(Exception):
            await cluster.admin.delete_topics([topic])
        await cluster.close()
        await servers.down("kafka")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--label", default="run", help="names the topic and the groups")
    args = parser.parse_args()
    asyncio.run(run(args.trials, args.label))
