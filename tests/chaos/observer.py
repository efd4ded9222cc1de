"""Reads everything the service publishes for a chaos run (every result topic and the
dead-letter topic, from the beginning) and keeps, per command id, its results in the
order they came, with when each arrived and where it sits in its partition."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shopflow.contracts.dead_letters import DeadLetter
from shopflow.contracts.events import RejectionReason, ResultEvent, parse_event
from shopflow.contracts.topics import EVENT_TOPICS, Topics
from shopflow.producers.kafka_connection import KafkaConnection
from tests.chaos.topic_reader import TopicReader

log = logging.getLogger(__name__)


def monotonic_of(timestamp_ms: int) -> float:
    """A record's timestamp (wall clock, ms; its producer's, on this machine) on
    time.monotonic()'s clock."""
    return timestamp_ms / 1000 - time.time() + time.monotonic()


@dataclass(frozen=True)
class Seen:
    event: ResultEvent
    partition: int
    offset: int
    arrived: float  # time.monotonic()
    created: float  # the record's timestamp (its producer's send), time.monotonic()'s clock

    @property
    def transient(self) -> bool:
        """A `temporarily_unavailable` answer: not an outcome, the command may be sent again."""
        return getattr(self.event, "reason", None) == RejectionReason.TEMPORARILY_UNAVAILABLE


class Observer(TopicReader):
    def __init__(
        self,
        kafka: KafkaConnection,
        topics: Topics,
        on_transient: Callable[[str], None],
    ) -> None:
        """`kafka`: a principal that may read the result topics and the dead letters
        (`shopflow-ops`)."""
        super().__init__(kafka)
        self._topics = topics
        self._on_transient = on_transient
        self.results: dict[str, list[Seen]] = {}
        self.dead_letters: list[DeadLetter] = []
        self.unreadable = 0
        self.last_arrival = time.monotonic()

    async def start(self, producer: AIOKafkaProducer) -> None:
        names = [self._topics.name(t) for t in EVENT_TOPICS] + [self._topics.dead_letters]
        await self.read_from_beginning(producer, names)

    def final(self, command_id: str) -> Seen | None:
        """The command's first outcome (its first result that is not transient)."""
        for seen in self.results.get(command_id, ()):
            if not seen.transient:
                return seen
        return None

    def on_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        now = time.monotonic()
        self.last_arrival = now
        if record.value is None:
            self.unreadable += 1
            return
        if record.topic == self._topics.dead_letters:
            self.dead_letters.append(DeadLetter.model_validate_json(record.value))
            return
        event = parse_event(record.value)
        seen = Seen(event, record.partition, record.offset, now, monotonic_of(record.timestamp))
        self.results.setdefault(event.command_id, []).append(seen)
        if seen.transient and self.final(event.command_id) is None:
            self._on_transient(event.command_id)
