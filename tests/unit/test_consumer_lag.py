"""The lag gauge and the readiness of a process's consumers, read from FastStream's
subscribers and aiokafka's consumers without I/O (the consumers are real, not started:
a change of the aiokafka state that `consumers.consumer_state` reads fails here)."""

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from shopflow.consumers.consumer_state import (
    ConsumerLag,
    ConsumersNotRunning,
    check_consumers_running,
    partition_lag,
)


@pytest.fixture
async def consumer() -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
    yield consumer
    await consumer.stop()


def _fetched(
    consumer: AIOKafkaConsumer, partition: TopicPartition, position: int, end: int
) -> None:
    """As after a fetch response: the position where the consumer's batches are, the
    partition's end as the broker reported it."""
    state = consumer._subscription.subscription.assignment.state_value(partition)
    state.seek(position)
    state.highwater = end


async def test_lag_is_the_end_minus_the_position_and_unknown_until_both_are_known(
    consumer: AIOKafkaConsumer,
) -> None:
    partition = TopicPartition("t", 0)
    consumer.assign([partition])
    assert partition_lag(consumer, partition) is None  # just assigned: nothing fetched

    _fetched(consumer, partition, position=7, end=12)

    assert partition_lag(consumer, partition) == 5
    assert await consumer.position(partition) == 7  # the public API reads the same


def _lag_samples(collector: ConsumerLag) -> dict[tuple[str, str, str], float]:
    [family] = list(collector.collect())
    assert family.name == "shopflow_consumer_lag"
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for s in family.samples
    }


async def test_the_gauge_has_a_series_per_group_and_assigned_partition_while_watched(
    consumer: AIOKafkaConsumer,
) -> None:
    broker = KafkaBroker("127.0.0.1:1")

    @broker.subscriber("t", group_id="g", batch=True)
    async def handle(body: object) -> None: ...

    [subscriber] = broker.subscribers
    subscriber.consumer = consumer  # type: ignore[attr-defined]  # as its start does
    consumer.assign([TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)])
    _fetched(consumer, TopicPartition("t", 0), position=3, end=3)
    _fetched(consumer, TopicPartition("t", 1), position=10, end=40)
    collector = ConsumerLag()

    assert _lag_samples(collector) == {}
    collector.watch(broker)
    # Partition 2 has no end nor position yet: left out rather than shown as 0.
    assert _lag_samples(collector) == {("g", "t", "0"): 0, ("g", "t", "1"): 30}

    consumer.assign([TopicPartition("t", 1)])  # a rebalance took 0 and 2 away
    _fetched(consumer, TopicPartition("t", 1), position=39, end=41)
    assert _lag_samples(collector) == {("g", "t", "1"): 2}

    collector.forget(broker)
    assert _lag_samples(collector) == {}


async def test_consumers_are_not_running_until_started_and_none_is_not_ready(
    consumer: AIOKafkaConsumer,
) -> None:
    broker = KafkaBroker("127.0.0.1:1")
    with pytest.raises(ConsumersNotRunning, match="no consumers"):
        await check_consumers_running(broker)

    @broker.subscriber("t", group_id="g", batch=True)
    async def handle(body: object) -> None: ...

    with pytest.raises(ConsumersNotRunning, match=r"1 of 1 not running \(g: t\)"):
        await check_consumers_running(broker)

    [subscriber] = broker.subscribers
    subscriber.consumer = consumer  # type: ignore[attr-defined]  # as its start does
    subscriber.running = True
    await check_consumers_running(broker)  # returns: ready
