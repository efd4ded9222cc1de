"""The worker's result sink against the real broker: messages handed over as record
batches land on the partition of their key, in order, with their header, however many
batches a partition needs; a message over the size limit is refused before anything is
sent."""

import secrets

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from shopflow.contracts.topics import Topics
from shopflow.kafka_access import ADMIN, kafka_connection
from shopflow.producers.publisher import KafkaMessageSink, OutgoingMessage, keyed_partitioner
from shopflow.settings import Settings

PARTITIONS = 3


async def _scratch_topic(settings: Settings) -> str:
    """A topic of the test run's prefix (deleted with the run's topics). No principal of
    the contract may write it: the test's clients are the Kafka admin."""
    name = f"sink-{secrets.token_hex(4)}"
    admin = kafka_connection(settings, ADMIN).admin()
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic_prefix + name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name


async def _read_all(settings: Settings, topic: str, count: int) -> dict[int, list[bytes]]:
    """Every record of `topic` by partition, once `count` came and nothing more does."""
    consumer = kafka_connection(settings, ADMIN).consumer()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        got: dict[int, list[bytes]] = {}
        seen, polls_after = 0, 0
        while seen < count or polls_after < 2:  # then look twice more for extras
            polls_after += seen >= count
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for record in records:
                    assert record.value is not None
                    assert record.key is not None
                    assert dict(record.headers) == {"content-type": b"application/json"}
                    expected = keyed_partitioner(record.key, [0, 1, 2], [0, 1, 2])
                    assert tp.partition == expected, "not on the partition of its key"
                    got.setdefault(tp.partition, []).append(record.value)
                    seen += 1
        return got
    finally:
        await consumer.stop()


async def _started_sink(settings: Settings, *, max_request_size: int) -> KafkaMessageSink:
    sink = KafkaMessageSink(
        kafka_connection(settings, ADMIN),
        Topics(settings.topic_prefix),
        max_request_size=max_request_size,
        client_id="sink-test",
    )
    await sink.start()
    return sink


@pytest.mark.usefixtures("service")
async def test_a_batch_lands_in_key_order_across_several_record_batches(
    test_settings: Settings,
) -> None:
    topic = await _scratch_topic(test_settings)
    sink = await _started_sink(test_settings, max_request_size=1 << 20)
    try:
        # 600 messages of ~300 bytes on 3 partitions: well over one 16 KiB batch each.
        messages = [
            OutgoingMessage(topic, str(i % 7).encode(), b'{"n":%d,"pad":"%s"}' % (i, b"x" * 280))
            for i in range(600)
        ]
        await (await sink.send_all(messages)).wait()
    finally:
        await sink.stop()

    got = await _read_all(test_settings, test_settings.topic_prefix + topic, len(messages))

    for partition, values in got.items():
        expected = [
            m.value for m in messages if keyed_partitioner(m.key, [0, 1, 2], [0, 1, 2]) == partition
        ]
        assert values == expected  # each partition in the order sent, nothing twice
    assert sum(len(v) for v in got.values()) == len(messages)


@pytest.mark.usefixtures("service")
async def test_a_message_over_the_limit_is_refused_before_anything_is_sent(
    test_settings: Settings,
) -> None:
    topic = await _scratch_topic(test_settings)
    sink = await _started_sink(test_settings, max_request_size=10_000)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await sink.send_all(
                [
                    OutgoingMessage(topic, b"1", b"small"),
                    OutgoingMessage(topic, b"2", b"x" * 20_000),
                ]
            )
        await (await sink.send_all([OutgoingMessage(topic, b"3", b"after")])).wait()
    finally:
        await sink.stop()

    got = await _read_all(test_settings, test_settings.topic_prefix + topic, 1)
    assert [v for values in got.values() for v in values] == [b"after"]
