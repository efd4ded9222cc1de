"""The service's topics for operators: created as the service creates them at start
(`shopflow.kafka_admin.ensure_topics`, the one place that knows how), and described as
the brokers have them."""

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from rich.table import Table
from rich.text import Text

from shopflow.kafka_admin import ensure_topics, planned_topics
from shopflow.kafka_offsets import LogRange, PartitionInfo, describe_partitions, log_ranges
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings


@dataclass(frozen=True)
class CreatedTopics:
    created: list[str]
    existing: list[str]


async def create(settings: Settings, kafka: KafkaConnection) -> CreatedTopics:
    """`ensure_topics`: raises TopicMismatch (a StartRefused) when an existing topic has
    fewer partitions than configured, and the broker's error when it refuses one."""
    created = await ensure_topics(settings, kafka)
    planned = planned_topics(settings)
    return CreatedTopics(created, [name for name in planned if name not in created])


@dataclass(frozen=True)
class PartitionState:
    info: PartitionInfo
    log: LogRange


@dataclass(frozen=True)
class TopicState:
    topic: str
    configured_partitions: int
    partitions: list[PartitionState] | None  # None: not on the brokers

    @property
    def replication_factor(self) -> int | None:
        # The smallest of its partitions' (they differ only while replicas are being
        # reassigned): that is what the topic's durability rests on.
        if not self.partitions:
            return None
        return min(len(p.info.replicas) for p in self.partitions)

    @property
    def end_offsets(self) -> int | None:
        """The partitions' end offsets summed: records ever written to the topic."""
        return None if self.partitions is None else sum(p.log.end for p in self.partitions)


async def describe(settings: Settings, kafka: KafkaConnection) -> list[TopicState]:
    """Every topic the service uses (`planned_topics`, the same list `create` makes), as
    the brokers have it."""
    planned = planned_topics(settings)
    admin = kafka.admin()
    await admin.start()
    try:
        described = await describe_partitions(admin, list(planned))
    finally:
        await admin.close()
    logs = await log_ranges(
        kafka,
        [
            TopicPartition(topic, p.partition)
            for topic, partitions in described.items()
            for p in partitions or ()
        ],
    )
    states = []
    for topic, plan in planned.items():
        partitions = described.get(topic)
        states.append(
            TopicState(
                topic,
                plan.partitions,
                None
                if partitions is None
                else [
                    PartitionState(p, logs[TopicPartition(topic, p.partition)]) for p in partitions
                ],
            )
        )
    return states


def as_json(state: TopicState) -> dict[str, Any]:
    return {
        "topic": state.topic,
        "exists": state.partitions is not None,
        "partitions": None if state.partitions is None else len(state.partitions),
        "configured_partitions": state.configured_partitions,
        "replication_factor": state.replication_factor,
        "end_offsets": state.end_offsets,
        "per_partition": [
            {
                "partition": p.info.partition,
                "leader": p.info.leader,
                "replicas": list(p.info.replicas),
                "in_sync_replicas": list(p.info.in_sync),
                "beginning_offset": p.log.beginning,
                "end_offset": p.log.end,
            }
            for p in state.partitions or ()
        ],
    }


def _nodes(nodes: tuple[int, ...]) -> str:
    return ",".join(str(node) for node in nodes)


def table(states: list[TopicState], *, verbose: bool) -> Table:
    shown = Table()
    shown.add_column("topic", no_wrap=True)
    shown.add_column("partitions", justify="right")
    shown.add_column("configured", justify="right")
    shown.add_column("replication factor", justify="right")
    shown.add_column("end offsets", justify="right")
    if verbose:
        for name in ("leader", "replicas", "in sync", "beginning"):
            shown.add_column(name, justify="right")
    for state in states:
        if state.partitions is None:
            shown.add_row(Text(state.topic), "missing", str(state.configured_partitions))
            continue
        shown.add_row(
            Text(state.topic),
            str(len(state.partitions)),
            str(state.configured_partitions),
            str(state.replication_factor),
            str(state.end_offsets),
            end_section=verbose,
        )
        if verbose:
            for p in state.partitions:
                shown.add_row(
                    Text(f"  partition {p.info.partition}"),
                    "",
                    "",
                    str(len(p.info.replicas)),
                    str(p.log.end),
                    str(p.info.leader),
                    _nodes(p.info.replicas),
                    _nodes(p.info.in_sync),
                    str(p.log.beginning),
                    end_section=p is state.partitions[-1],
                )
    return shown
