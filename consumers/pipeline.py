"""One command topic's batch: decode, apply, publish, in that order.

Acknowledging is the subscriber's job and happens only after `handle` returns, i.e.
after the batch's transaction committed and every result and dead letter was delivered.
"""

import logging
from collections.abc import Sequence

from consumers import metrics
from consumers.applier import BatchApplier, Clock, utc_now
from consumers.decoding import DecodedCommand, RawRecord, Undeliverable, decode_record
from contracts.topics import DEAD_LETTERS, CommandRoute
from producers.publisher import MessageSink, OutgoingMessage

log = logging.getLogger(__name__)


class CommandPipeline:
    def __init__(
        self,
        route: CommandRoute,
        applier: BatchApplier,
        sink: MessageSink,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.route = route
        self._applier = applier
        self._sink = sink
        self._clock = clock

    async def handle(self, records: Sequence[RawRecord]) -> None:
        received_at = self._clock()
        commands: list[DecodedCommand] = []
        dead: list[Undeliverable] = []
        for record in records:
            decoded = decode_record(self.route, record, received_at)
            if isinstance(decoded, Undeliverable):
                dead.append(decoded)
            else:
                commands.append(decoded)

        outcomes = await self._applier.apply(commands)

        messages = [
            OutgoingMessage(DEAD_LETTERS, d.record.key, d.dead_letter.model_dump_json().encode())
            for d in dead
        ]
        messages += [OutgoingMessage(o.result_topic, o.key.encode(), o.value) for o in outcomes]
        await self._sink.publish_all(messages)

        for d in dead:
            log.warning(
                "dead letter from %s[%d]@%d: %s (%s)",
                d.record.topic,
                d.record.partition,
                d.record.offset,
                d.dead_letter.reason.value,
                d.dead_letter.error,
            )
            metrics.DEAD_LETTERS.labels(self.route.topic, d.dead_letter.reason.value).inc()
        for o in outcomes:
            metrics.COMMANDS.labels(self.route.topic, o.kind.value).inc()
