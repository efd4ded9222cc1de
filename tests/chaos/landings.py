"""Where each command landed on its topic, every copy, whichever way it was sent, read
from the command topics as the Kafka admin (of the contract's principals only the
service reads them). A command sent over HTTP is produced by the gateway, so the
driver's own producer cannot say where it landed; the checks of key order, and of which
of two cancels (or ships) came first, compare these offsets, as they compare those of
the driver's own sends: an HTTP command and a Kafka one of a key are ordered by where
each landed, whenever each was sent."""

import asyncio
import contextlib
import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shopflow.contracts.topics import ROUTES_BY_TOPIC, Topics
from shopflow.producers.client import topic_partitions
from shopflow.producers.kafka_connection import KafkaConnection


class Landings:
    def __init__(self, kafka: KafkaConnection, topics: Topics) -> None:
        """`kafka`: a principal that may read the command topics (the admin)."""
        self._kafka = kafka
        self._topics = topics
        self.offsets: dict[str, list[int]] = {}  # by command id, every copy's
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, producer: AIOKafkaProducer) -> None:
        """Start reading from the beginning; `producer` finds the topics' partitions."""
        self._consumer = self._kafka.consumer(enable_auto_commit=False)
        await self._consumer.start()
        assigned = []
        for topic in ROUTES_BY_TOPIC:
            name = self._topics.name(topic)
            assigned += [TopicPartition(name, p) for p in await topic_partitions(producer, name)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # raises what stopped the reader

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    command_id = _command_id(record.value)
                    if command_id is not None:
                        self.offsets.setdefault(command_id, []).append(record.offset)


def _command_id(value: bytes | None) -> str | None:
    """The record's command id; None for a record without one (poison)."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    found = document.get("command_id") if isinstance(document, dict) else None
    return found if isinstance(found, str) else None
