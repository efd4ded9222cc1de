"""A reader of whole topics from their beginning, in a task of its own, for the run's
watchers (`observer.Observer`: the result topics; `landings.Landings`: the command
topics). Partitions are assigned, not subscribed: no group, and nothing committed."""

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shopflow.producers.client import topic_partitions
from shopflow.producers.kafka_connection import KafkaConnection


class TopicReader:
    def __init__(self, kafka: KafkaConnection) -> None:
        self._kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def read_from_beginning(self, producer: AIOKafkaProducer, names: Iterable[str]) -> None:
        """Start reading `names`; `producer` finds their partitions (a consumer's
        metadata may not list a new topic for minutes)."""
        self._consumer = self._kafka.consumer(enable_auto_commit=False)
        await self._consumer.start()
        assigned = []
        for name in names:
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

    def on_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        raise NotImplementedError

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    self.on_record(record)
