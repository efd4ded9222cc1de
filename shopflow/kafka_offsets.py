"""What the brokers say about topics' partitions: their replicas, and the offsets each
partition's log begins and ends at. Shared by `shopflow topics describe` and the
consumer-lag computation (`shopflow.kafka_lag`)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError, for_code

from shopflow.producers.kafka_connection import KafkaConnection


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int  # node id; -1 while the partition has no leader
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


@dataclass(frozen=True)
class LogRange:
    """A partition's log: `beginning` is its first offset still kept, `end` the offset
    the next record will get (the high watermark). end - beginning records are kept."""

    beginning: int
    end: int


async def describe_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> dict[str, list[PartitionInfo] | None]:
    """Each topic's partitions, in partition order; None for a topic the brokers do not
    know. Any other error the metadata reports for a topic is raised, naming it."""
    described: dict[str, list[PartitionInfo] | None] = {}
    for topic in await admin.describe_topics(list(topics)):
        name, code = topic["topic"], topic["error_code"]
        if code == UnknownTopicOrPartitionError.errno:
            described[name] = None
            continue
        if code:
            raise for_code(code)(f"describing topic {name}")
        described[name] = sorted(
            (
                PartitionInfo(p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
                for p in topic["partitions"]
            ),
            key=lambda p: p.partition,
        )
    return described


async def log_ranges(
    kafka: KafkaConnection, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, LogRange]:
    """The first and next offsets of every partition given (which must exist: aiokafka
    waits for ever on one that does not), read by a consumer of no group."""
    wanted = list(partitions)
    if not wanted:
        return {}
    consumer = kafka.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        beginnings = await consumer.beginning_offsets(wanted)
        ends = await consumer.end_offsets(wanted)
    finally:
        await consumer.stop()
    return {tp: LogRange(beginnings[tp], ends[tp]) for tp in wanted}
