"""Reads everything the service publishes for a chaos run (every result topic and the
dead-letter topic, from the beginning) and keeps, per command id, its results in the
order they came, with when each arrived and where it sits in its partition."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shopflow.contracts.dead_letters import DeadLetter
from shopflow.contracts.events import RejectionReason, ResultEvent, parse_event
from shopflow.contracts.topics import EVENT_TOPICS, Topics
from shopflow.producers.client import topic_partitions
from shopflow.producers.kafka_connection import KafkaConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seen:
    event: ResultEvent
    partition: int
    offset: int
    arrived: float  # time.monotonic()

    @property
    def transient(self) -> bool:
        """A `temporarily_unavailable` answer: not an outcome, the command may be sent again."""
        return getattr(self.event, "reason", None) == RejectionReason.TEMPORARILY_UNAVAILABLE


class Observer:
    def __init__(
        self,
        kafka: KafkaConnection,
        topics: Topics,
        on_transient: Callable[[str], None],
    ) -> None:
        """`kafka`: a principal that may read the result topics and the dead letters
        (`shopflow-ops`)."""
        self._kafka = kafka
        self._topics = topics
        self._on_transient = on_transient
        self.results: dict[str, list[Seen]] = {}
        self.dead_letters: list[DeadLetter] = []
        self.unreadable = 0
        self.last_arrival = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, producer: AIOKafkaProducer) -> None:
        """Start reading; `producer` finds the topics' partitions (a consumer's metadata
        may not list a new topic for minutes)."""
        self._consumer = self._kafka.consumer(enable_auto_commit=False)
        await self._consumer.start()
        names = [self._topics.name(t) for t in EVENT_TOPICS] + [self._topics.dead_letters]
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

    def final(self, command_id: str) -> Seen | None:
        """The command's first outcome (its first result that is not transient)."""
        for seen in self.results.get(command_id, ()):
            if not seen.transient:
                return seen
        return None

    async def _read(self) -> None:
        assert self._consumer is not None
        dead_letter_topic = self._topics.dead_letters
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    self.last_arrival = now
                    if record.value is None:
                        self.unreadable += 1
                        continue
                    if tp.topic == dead_letter_topic:
                        self.dead_letters.append(DeadLetter.model_validate_json(record.value))
                        continue
                    event = parse_event(record.value)
                    seen = Seen(event, tp.partition, record.offset, now)
                    self.results.setdefault(event.command_id, []).append(seen)
                    if seen.transient and self.final(event.command_id) is None:
                        self._on_transient(event.command_id)
