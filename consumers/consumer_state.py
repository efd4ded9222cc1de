"""This process's Kafka consumers, as FastStream holds them (one per subscriber that
`consumers.subscribers` registered): whether they run (a worker's readiness) and how far
behind each of their partitions is (`shopflow_consumer_lag{group,topic,partition}`).

The lag is read at scrape time from what each consumer already knows, with no request
to the brokers: `highwater - position`, where the highwater is the partition's end as of
the consumer's last fetch response (an idle partition's fetch returns every
`fetch_max_wait_ms`, 500 ms) and the position is the offset of the next record the
consumer hands to its batches. It counts records on the broker that this process has not
taken yet; the batches taken and not yet committed (one being applied, one being
delivered: `ConsumerLane`) are not in it. Only partitions assigned now are exported, so
a partition that a rebalance moved to another worker disappears from this one's
metrics rather than keeping its last figure; one whose end or position the consumer does
not know yet (just assigned, no fetch answered) is left out until it does.
"""

from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import LogicSubscriber
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


def _kafka_subscribers(broker: KafkaBroker) -> list[LogicSubscriber[Any]]:
    return [s for s in broker.subscribers if isinstance(s, LogicSubscriber)]


class ConsumersNotRunning(Exception):
    pass


async def check_consumers_running(broker: KafkaBroker) -> None:
    """Return if the broker has subscribers and every one of them has started its
    consumer and not been stopped; raise `ConsumersNotRunning` naming those that have
    not. A consumer that runs but has no partition (more consumers in its group than
    partitions) counts as running."""
    subscribers = _kafka_subscribers(broker)
    if not subscribers:
        raise ConsumersNotRunning("no consumers")
    stopped = sorted(
        f"{s.group_id or '-'}: {','.join(s.topic_names)}"
        for s in subscribers
        if not s.running or s.consumer is None
    )
    if stopped:
        raise ConsumersNotRunning(
            f"{len(stopped)} of {len(subscribers)} not running ({'; '.join(stopped)})"
        )


def _position(consumer: AIOKafkaConsumer, partition: TopicPartition) -> int | None:
    """The consumer's position on an assigned partition if it knows it, else None;
    without I/O. aiokafka's public `position()` is a coroutine that waits (up to the
    request timeout) for a position it does not know yet, and a scrape must neither wait
    nor leave the event loop; so this reads the state that `position()` itself returns
    when it does know it (aiokafka 0.14; tests/unit/test_consumer_lag.py holds it to
    a real consumer, so a change in aiokafka fails there rather than hiding the gauge)."""
    state = consumer._subscription.subscription.assignment.state_value(partition)
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def partition_lag(consumer: AIOKafkaConsumer, partition: TopicPartition) -> int | None:
    """Records on the broker behind the consumer's position on `partition` (assigned to
    it), or None while the consumer does not know its end or its position."""
    highwater = consumer.highwater(partition)
    position = _position(consumer, partition)
    if highwater is None or position is None:
        return None
    # The highwater is from the last fetch response and the position moves with the
    # records handed out since, which that response held: it cannot pass the highwater,
    # but the two are read apart, so a negative difference is taken as caught up.
    return max(0, int(highwater) - position)


class ConsumerLag(Collector):
    """`shopflow_consumer_lag` of the consumers of every broker being watched: a
    runtime watches its broker from its start to its stop (several runtimes can run in
    one process: the tests')."""

    def __init__(self) -> None:
        self._brokers: list[KafkaBroker] = []

    def watch(self, broker: KafkaBroker) -> None:
        if broker not in self._brokers:
            self._brokers.append(broker)

    def forget(self, broker: KafkaBroker) -> None:
        if broker in self._brokers:
            self._brokers.remove(broker)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "shopflow_consumer_lag",
            "Records on the broker behind this process's consumer, per consumer group and "
            "partition assigned to it now (its end as of the consumer's last fetch, minus "
            "the position of the next record its batches take).",
            labels=["group", "topic", "partition"],
        )
        lags: dict[tuple[str, str, int], int] = {}
        for broker in list(self._brokers):
            for subscriber in _kafka_subscribers(broker):
                consumer = subscriber.consumer
                if consumer is None:
                    continue
                # One pass of plain reads, no await: the assignment cannot change
                # under it (collect runs on the consumers' event loop: queries.health).
                for partition in consumer.assignment():
                    lag = partition_lag(consumer, partition)
                    if lag is not None:
                        key = (subscriber.group_id or "", partition.topic, partition.partition)
                        lags[key] = lag
        for (group, topic, partition_number), lag in sorted(lags.items()):
            family.add_metric([group, topic, str(partition_number)], lag)
        yield family


CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)
