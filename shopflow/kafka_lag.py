"""Consumer lag of the service's consumer groups, per partition, as the brokers see it
(committed offsets against the partitions' ends): what `shopflow lag` prints, and what a
metrics exporter can publish without running inside a worker.

`GET /metrics`' `shopflow_consumer_lag` is each worker's own view of the partitions it
holds; this one is the groups' (committed offsets), so it also covers partitions no
worker holds, a group with no worker running, and a stopped service.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

from shopflow.contracts.topics import COMMAND_ROUTES, ORDERS_EVENTS, Topics
from shopflow.kafka_offsets import LogRange, describe_partitions, log_ranges
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed no offset for this partition
    end: int  # the offset the partition's next record will get
    lag: int  # records the group has still to read there


class MissingTopics(LookupError):
    """Topics a consumer group reads are not on the brokers (never created?)."""


def service_consumer_groups(settings: Settings) -> dict[str, str]:
    """Each consumer group of the service and the topic it reads, as the settings name
    them (`Settings.command_group`, `Settings.sales_aggregator_group`): one per command
    topic, and the sales aggregator's."""
    topics = Topics(settings.topic_prefix)
    groups = {
        settings.command_group(topics.name(route.topic)): topics.name(route.topic)
        for route in COMMAND_ROUTES
    }
    groups[settings.sales_aggregator_group] = topics.name(ORDERS_EVENTS)
    return groups


def _lag(committed: int | None, log: LogRange) -> int:
    # Where the group would read next: its committed offset, or, with none (a new group)
    # or one the log no longer holds (retention deleted it), the log's beginning, since
    # the service's consumers start at `earliest`.
    position = log.beginning if committed is None else max(committed, log.beginning)
    return max(0, log.end - position)


async def consumer_lag(
    settings: Settings, kafka: KafkaConnection, groups: Mapping[str, str] | None = None
) -> list[PartitionLag]:
    """Lag per group and partition, ordered by group then partition. `groups` maps
    group id to topic; by default the service's (`service_consumer_groups`). Raises
    MissingTopics when a topic is not there, and aiokafka's errors when the brokers
    cannot be reached."""
    wanted = dict(groups) if groups is not None else service_consumer_groups(settings)
    admin = kafka.admin()
    await admin.start()
    try:
        described = await describe_partitions(admin, sorted(set(wanted.values())))
        missing = sorted(topic for topic, partitions in described.items() if partitions is None)
        if missing:
            raise MissingTopics(f"no such topic: {', '.join(missing)}")
        partitions_of = {
            topic: [TopicPartition(topic, p.partition) for p in partitions or ()]
            for topic, partitions in described.items()
        }
        fetched = await asyncio.gather(
            *(
                admin.list_consumer_group_offsets(group, partitions=partitions_of[topic])
                for group, topic in wanted.items()
            )
        )
    finally:
        await admin.close()
    logs = await log_ranges(kafka, [tp for tps in partitions_of.values() for tp in tps])
    lags = []
    for (group, topic), offsets in zip(wanted.items(), fetched, strict=True):
        for tp in partitions_of[topic]:
            found = offsets.get(tp)
            # The broker answers -1 for a partition the group has committed nothing for.
            committed = found.offset if found is not None and found.offset >= 0 else None
            lags.append(
                PartitionLag(
                    group, topic, tp.partition, committed, logs[tp].end, _lag(committed, logs[tp])
                )
            )
    return sorted(lags, key=lambda lag: (lag.group, lag.partition))
