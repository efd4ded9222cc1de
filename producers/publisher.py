"""Publishing a batch of messages and waiting until Kafka has them all.

`send_all` hands a batch's messages to the producer and returns their `Delivery`; the
consumer commits its offsets only after that delivery completed: a result is never
acknowledged before it is delivered (at-least-once; event ids make it idempotent
downstream).

Results go out through an aiokafka producer of the sink's own, not FastStream's
`broker.publish`: per message that wraps the send in middlewares, a correlation id and
a headers dict, which profiling showed costing a third as much CPU again as the send
itself, for nothing shopflow uses.
"""

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2

from contracts.topics import Topics

_HEADERS = [("content-type", b"application/json")]


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str  # the contract's topic name
    key: bytes | None
    value: bytes


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
    bootstrap: str,
    *,
    max_request_size: int,
    linger_ms: int,
    client_id: str,
    partitioner: Callable[[bytes | None, list[int], list[int]], int] = keyed_partitioner,
) -> AIOKafkaProducer:
    """The producer every shopflow sender uses: idempotent with acks=all, so a retried
    send never duplicates or reorders a message within its partition. Make it inside the
    running event loop (aiokafka insists)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_request_size=max_request_size,
        partitioner=partitioner,
        client_id=client_id,
    )


class KafkaMessageSink:
    def __init__(
        self, bootstrap: str, topics: Topics, *, max_request_size: int, client_id: str
    ) -> None:
        self._topics = topics
        self._bootstrap = bootstrap
        self._max_request_size = max_request_size
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka wants its objects made in the running loop
        # (the HTTP process builds its runtime before uvicorn starts the loop).
        self._producer = reliable_producer(
            self._bootstrap,
            max_request_size=self._max_request_size,
            # No linger: a batch's messages are all enqueued at once (see send_all), so
            # waiting for more only adds latency (5 ms cost p50 at 500/s 30 ms instead of
            # 8 ms, `python -m tests.bench.latency`).
            linger_ms=0,
            client_id=self._client_id,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> Delivery:
        # Everything is enqueued before the producer's sender runs (aiokafka's send does
        # not yield while there is room), so a batch goes out as one request per partition
        # even with linger_ms=0, and costs one round of broker acknowledgements. The
        # idempotent producer keeps per-partition order of sends.
        if self._producer is None:
            raise RuntimeError("the sink publishes only between start() and stop()")
        send = self._producer.send
        name = self._topics.name
        return Delivery(
            [await send(name(m.topic), m.value, key=m.key, headers=_HEADERS) for m in messages]
        )
