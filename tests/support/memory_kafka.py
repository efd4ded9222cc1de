"""Kafka's two ends in memory, for running the subscribers under FastStream's
TestKafkaBroker (tests/unit/test_wiring_testbroker.py).

TestKafkaBroker starts a broker without connecting and hands each published message
straight to its subscriber; it never fetches, so there is no consumer behind a message:
a handler's `message.consumer` is FastStream's stand-in (`faststream.kafka.message.
FakeConsumer`: `commit()` taking no offsets, `seek` doing nothing, no `getmany`, no
`highwater`). A consumer lane commits each batch's own offsets once its results are
delivered, seeks back a batch that failed, and tops a batch up by fetching
(`consumers.subscribers`): the stand-in can do none of that, nor show it. So:

- `MemoryKafka` is the consumer's side: partitions of records with real offsets, the
  consumer's position in each, and its commits, with aiokafka's meanings. `handing_over`
  is a FastStream middleware (public API) that gives it to each handler as
  `message.consumer`, where FastStream would give its aiokafka consumer; `poll` fetches
  from it and hands each batch to the subscriber, as FastStream's consume loop does.
- `MemorySink` is the producer's side (`producers.publisher.MessageSink`). The
  service's `KafkaMessageSink` sends through an aiokafka producer of its own (record
  batches, not FastStream's `publish`: see its module), which TestKafkaBroker does not
  replace; tests/integration/test_result_sink.py covers it against Kafka.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage

from shopflow.producers.publisher import Delivery, OutgoingMessage

Headers = Sequence[tuple[str, bytes]]


class MemoryKafka:
    """What `consumers.subscribers.BatchConsumer` asks of aiokafka's consumer, over
    in-memory partitions; `append` is a producer writing to them."""

    def __init__(self) -> None:
        self.partitions: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int] | None] = []  # None: "all consumed"
        self.committed: dict[TopicPartition, int] = {}
        self._timestamps = itertools.count(1_700_000_000_000)

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int = 0,
        headers: Headers = (),
    ) -> ConsumerRecord[bytes, bytes]:
        log = self.partitions.setdefault(TopicPartition(topic, partition), [])
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=len(log),
            timestamp=next(self._timestamps),
            timestamp_type=0,
            key=key,
            value=value,
            checksum=None,
            serialized_key_size=len(key or b""),
            serialized_value_size=len(value or b""),
            headers=tuple(headers),
        )
        log.append(record)
        return record

    def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, self.committed.get(tp, 0))

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The records after each partition's position (of `partitions`, or all), at most
        `max_records` in all; the positions move past them."""
        room = max_records if max_records is not None else 1 << 30
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in partitions or tuple(self.partitions):
            records = self.partitions.get(tp, [])[self.position(tp) :][:room]
            if records:
                fetched[tp] = records
                self.positions[tp] = records[-1].offset + 1
                room -= len(records)
        return fetched

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """aiokafka's meaning: the given offsets, or without them every consumed position
        (what FastStream's own acknowledgement would do)."""
        self.commits.append(None if offsets is None else dict(offsets))
        self.committed.update(self.positions if offsets is None else offsets)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.partitions.get(partition, []))


def handing_over(kafka: MemoryKafka) -> type[BaseMiddleware]:
    """A broker middleware that makes `kafka` the consumer of every message handled."""

    class HandOver(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            msg.consumer = kafka  # type: ignore[attr-defined]  # a KafkaMessage's
            return await call_next(msg)

    return HandOver


def subscriber_of(broker: KafkaBroker, topic: str) -> BatchSubscriber:
    [found] = [
        s
        for s in broker.subscribers
        if isinstance(s, BatchSubscriber) and topic in s.topic_names_for_subscribe
    ]
    return found


async def poll(broker: KafkaBroker, kafka: MemoryKafka, topic: str, max_records: int) -> int:
    """What FastStream's consume loop does for the topic's batch subscriber, until the
    consumer has caught up: fetch from the positions, hand over the batch. Returns how
    many batches it handed over. (The subscriber's errors are raised here rather than
    logged and dropped as that loop does, so that a test sees them.)"""
    subscriber = subscriber_of(broker, topic)
    partitions = [tp for tp in kafka.partitions if tp.topic == topic]
    batches = 0
    while fetched := await kafka.getmany(*partitions, max_records=max_records):
        await subscriber.process_message(tuple(r for rs in fetched.values() for r in rs))
        batches += 1
    return batches


class MemorySink:
    """Results and dead letters handed to "Kafka": `delivered` once acknowledged. A
    hand-over is acknowledged at once, unless `hold` (then at `release()`), or it fails
    with the next of `failures` (then none of its messages is delivered)."""

    def __init__(self) -> None:
        self.delivered: list[OutgoingMessage] = []
        self.hold = False
        self.failures: list[Exception] = []
        self._held: list[tuple[asyncio.Future[None], list[OutgoingMessage]]] = []

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            ack.set_exception(self.failures.pop(0))
        elif self.hold:
            self._held.append((ack, list(messages)))
        else:
            self.delivered.extend(messages)
            ack.set_result(None)
        return Delivery([ack])

    def release(self) -> None:
        for ack, messages in self._held:
            self.delivered.extend(messages)
            ack.set_result(None)
        self._held.clear()


async def until(condition: Callable[[], bool], *, timeout: float = 2.0) -> None:
    """Wait for the background work (a batch's delivery, then its offset commit): the
    lane's own tasks, which signal nothing a test could wait on, so this polls."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
