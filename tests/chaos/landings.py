"""Where each command landed on its topic, every copy, whichever way it was sent, read
from the command topics as the Kafka admin (of the contract's principals only the
service reads them). A command sent over HTTP is produced by the gateway, so the
driver's own producer cannot say where it landed; the checks of key order, and of which
of two cancels (or ships) came first, compare these offsets, as they compare those of
the driver's own sends: an HTTP command and a Kafka one of a key are ordered by where
each landed, whenever each was sent."""

import json
import time

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shopflow.contracts.topics import ROUTES_BY_TOPIC, Topics
from shopflow.producers.kafka_connection import KafkaConnection
from tests.chaos.observer import monotonic_of
from tests.chaos.topic_reader import TopicReader


class Landings(TopicReader):
    def __init__(self, kafka: KafkaConnection, topics: Topics) -> None:
        """`kafka`: a principal that may read the command topics (the admin)."""
        super().__init__(kafka)
        self._topics = topics
        self.offsets: dict[str, list[int]] = {}  # by command id, every copy's
        # By command id, its first copy: (partition, when it was sent (its timestamp),
        # when this reader got it), on time.monotonic()'s clock.
        self.first: dict[str, tuple[int, float, float]] = {}

    async def start(self, producer: AIOKafkaProducer) -> None:
        """Start reading from the beginning; `producer` finds the topics' partitions."""
        await self.read_from_beginning(producer, map(self._topics.name, ROUTES_BY_TOPIC))

    def on_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        command_id = _command_id(record.value)
        if command_id is not None:
            self.offsets.setdefault(command_id, []).append(record.offset)
            self.first.setdefault(
                command_id, (record.partition, monotonic_of(record.timestamp), time.monotonic())
            )


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
