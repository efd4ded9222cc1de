"""Publishing a batch of messages and waiting until Kafka has them all.

The consumer commits its offsets only after `publish_all` returns: a result is never
acknowledged before it is delivered (at-least-once; event ids make it idempotent
downstream).
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from faststream.kafka import KafkaBroker

from contracts.topics import Topics

_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str  # the contract's topic name
    key: bytes | None
    value: bytes


class MessageSink(Protocol):
    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None: ...


class KafkaMessageSink:
    def __init__(self, broker: KafkaBroker, topics: Topics) -> None:
        self._broker = broker
        self._topics = topics

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None:
        # Enqueue everything first (in order: the idempotent producer keeps per-partition
        # order of sends), then wait for every acknowledgement at once, so a batch costs
        # one round of broker acknowledgements rather than one per message.
        pending = [
            await self._broker.publish(
                m.value,
                self._topics.name(m.topic),
                key=m.key,
                headers=_HEADERS,
                no_confirm=True,
            )
            for m in messages
        ]
        if pending:
            await asyncio.gather(*pending)
