"""Publishing a batch of messages and waiting until Kafka has them all.

`send_all` hands a batch's messages to the producer and returns their `Delivery`; the
lane commits the batch's offsets only once that delivery completed (at-least-once;
event ids make it idempotent downstream). Results go through an aiokafka producer of the
sink's own, not FastStream's `broker.publish`, whose per-message middlewares, correlation
id and headers shopflow does not use (docs/measurements.md#optimisations). A message
that carries its command's trace context gets a "create" span, a child of it, and a
`traceparent` header naming it: the result continues its command's trace.
"""

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import TracerProvider

from shopflow.contracts.topics import Topics
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.producers.tracing import producer_span, trace_headers

_HEADERS = [("content-type", b"application/json")]


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str  # the contract's topic name
    key: bytes | None
    value: bytes
    # The span of the command this answers, whose trace the message continues; None when
    # tracing is off. None for dead letters too: they are sized to fit their topic with a
    # fixed margin for headers (producers.dead_letters), which a sender's `tracestate`,
    # of no bounded length, could overrun. A dead letter names its record, and the
    # record's span says it was dead-lettered.
    trace_context: Context | None = None


class Delivery:
    """Messages handed to the producer, in order: `wait()` returns once Kafka has every
    one of them, or raises what failed. Waiting again gives the same answer."""

    __slots__ = ("_acks",)

    def __init__(self, acks: Sequence["asyncio.Future[Any]"] = ()) -> None:
        self._acks = acks

    async def wait(self) -> None:
        if self._acks:
            await asyncio.gather(*self._acks)


DELIVERED = Delivery()  # nothing to deliver


class MessageSink(Protocol):
    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        """Hand every message to Kafka, in order, without waiting for its acknowledgement."""
        ...


@functools.lru_cache(maxsize=1 << 16)
def _partition_index(key: bytes, partitions: int) -> int:
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def keyed_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (the Java client's murmur2 of the key, so a key
    lands where any Kafka client would put it), memoised: result keys (user and product
    ids) repeat, and aiokafka's murmur2 is pure Python. A message without a key (the dead
    letter of a record that had none) goes to a random partition, as by default."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_partition_index(key, len(all_partitions))]


def reliable_producer(
    kafka: KafkaConnection,
    *,
    max_request_size: int,
    linger_ms: int,
    client_id: str,
    partitioner: Callable[[bytes | None, list[int], list[int]], int] = keyed_partitioner,
) -> AIOKafkaProducer:
    """The producer every shopflow sender uses: idempotent with acks=all, so a retried
    send never duplicates or reorders a message within its partition. Make it inside the
    running event loop (aiokafka insists)."""
    return kafka.producer(
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_request_size=max_request_size,
        partitioner=partitioner,
        client_id=client_id,
    )


class KafkaMessageSink:
    def __init__(
        self,
        kafka: KafkaConnection,
        topics: Topics,
        *,
        max_request_size: int,
        client_id: str,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._topics = topics
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._kafka = kafka
        self._max_request_size = max_request_size
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka wants its objects made in the running loop
        # (the HTTP process builds its runtime before uvicorn starts the loop).
        self._producer = reliable_producer(
            self._kafka,
            max_request_size=self._max_request_size,
            # No linger: a batch's messages are handed over at once (see send_all), so
            # waiting for more only adds latency (docs/measurements.md#optimisations).
            linger_ms=0,
            client_id=self._client_id,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        """Hand the messages to the producer as record batches, one per partition (more
        if one fills up), in order: the idempotent producer keeps each partition's order.

        Batches rather than one `send` per message: aiokafka makes a future per message
        sent alone, and that, with waiting on them all, was a fifth of a worker's CPU
        (py-spy on a drain). A message over `max_request_size` is refused before anything
        is sent, as `send` refuses it."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the sink publishes only between start() and stop()")
        open_batches: dict[tuple[str, int], BatchBuilder] = {}
        acks: list[asyncio.Future[Any]] = []
        partitions_of: dict[str, list[int]] = {}
        placed: list[tuple[str, int, OutgoingMessage, list[tuple[str, bytes]]]] = []
        for m in messages:
            topic = self._topics.name(m.topic)
            if topic not in partitions_of:
                partitions_of[topic] = sorted(await producer.partitions_for(topic))
            partitions = partitions_of[topic]
            partition = keyed_partitioner(m.key, partitions, partitions)
            headers = _HEADERS
            if m.trace_context is not None:
                span = trace.get_current_span(m.trace_context)
                if span.is_recording():
                    # The semantic conventions' "create" span of a message sent in a batch,
                    # whose context the message carries; ended at once. None in a trace
                    # that is not recorded (sampled out): the message carries its
                    # command's context, as good to go on with, and costs no span.
                    span = producer_span(
                        self._tracer,
                        topic,
                        "create",
                        key=m.key,
                        parent=m.trace_context,
                        partition=partition,
                    )
                    span.end()
                headers = [*_HEADERS, *trace_headers(span)]
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(m.key, m.value, headers)
            if size > self._max_request_size:
                raise MessageSizeTooLargeError(
                    f"a message of {size} bytes for {m.topic} is over max_request_size "
                    f"({self._max_request_size})"
                )
            placed.append((topic, partition, m, headers))
        for topic, partition, m, headers in placed:
            batch = open_batches.get((topic, partition))
            if batch is not None and _append(batch, m, headers):
                continue
            if batch is not None:  # full: off it goes, and a new one
                acks.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[(topic, partition)] = producer.create_batch()
            if not _append(batch, m, headers):
                raise MessageSizeTooLargeError(f"a message for {topic} fits no record batch")
        for (topic, partition), batch in open_batches.items():
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        return Delivery(acks)


def _append(
    batch: BatchBuilder, message: OutgoingMessage, headers: list[tuple[str, bytes]]
) -> bool:
    return (
        batch.append(timestamp=None, key=message.key, value=message.value, headers=headers)
        is not None
    )
