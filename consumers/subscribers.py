"""The FastStream wiring: one batch subscriber per command topic.

Choices (see README, "Delivery guarantees"):
- `AckPolicy.MANUAL`: the offset is committed by `message.ack()` only after the batch
  committed in PostgreSQL and every result was delivered to Kafka. FastStream's default
  (ACK_FIRST, auto commit) would be at-most-once; ACK / REJECT_ON_ERROR would commit
  after a failure; NACK_ON_ERROR would retry a poison batch forever.
- Any error escaping the pipeline seeks the batch back (`nack`) and backs off: the batch
  is redelivered and the idempotency ledger turns what was already applied into replays.
  Only transient errors get that far (a server down: wait it out): malformed records
  become dead letters inside the pipeline, and a record that fails for good is isolated
  there and dead-lettered as processing_failed (`consumers.pipeline`).
- Each partition's progress is tracked (`consumers.progress`): its lag after each batch,
  and how long it has stood still while a batch of it keeps failing.
- `auto_offset_reset="earliest"`: a new group starts at the beginning, so commands sent
  before the service first started are not skipped.
- One consumer group per command topic (`<SHOPFLOW_CONSUMER_GROUP>.<topic>`), so a
  rebalance of one topic does not pause the others.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from consumers import metrics
from consumers.pipeline import CommandPipeline
from consumers.progress import PROGRESS

log = logging.getLogger(__name__)

_NACK_BACKOFF_SECONDS = 1.0


async def parse_without_headers(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[Any]],
) -> Any:
    # FastStream's parser decodes every header as UTF-8 and would raise on a sender's
    # binary header, losing the whole batch to an error outside our handler. Commands
    # carry nothing in headers, so they are dropped before parsing.
    return await original(tuple(dataclasses.replace(r, headers=()) for r in records))


async def records_as_is(message: Any, original: Any) -> Any:
    # Decoding is the pipeline's (it dead-letters what it cannot decode); hand it the raw
    # records rather than letting FastStream try JSON first.
    return message.raw_message


Records = tuple[ConsumerRecord[Any, Any], ...]


@dataclass(frozen=True)
class ConsumerOptions:
    """How each batch consumer polls and stays in its group (the SHOPFLOW_* settings)."""

    max_records: int
    batch_timeout_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int


def _record_progress(message: KafkaMessage, records: Records) -> None:
    last: dict[int, int] = {}
    for record in records:
        last[record.partition] = max(record.offset, last.get(record.partition, -1))
    consumer = getattr(message, "consumer", None)
    topic = records[0].topic
    for partition, offset in last.items():
        highwater = None
        if consumer is not None:
            try:
                highwater = consumer.highwater(TopicPartition(topic, partition))
            except Exception:  # not every consumer (FastStream's test one) knows it
                highwater = None
        PROGRESS.advanced(topic, partition, None if highwater is None else highwater - (offset + 1))


def register_batch_subscriber(
    broker: KafkaBroker,
    topic: str,
    work: Callable[[Records], Awaitable[None]],
    *,
    group_id: str,
    options: ConsumerOptions,
    title: str,
    description: str,
    include_in_schema: bool = True,
) -> None:
    """A batch subscriber that commits its offsets only after `work` finished the batch,
    and seeks the batch back (redelivery, after a pause) when `work` raises."""

    async def handle_batch(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        if not isinstance(records, tuple) or not records:
            return
        try:
            await work(records)
        except Exception:
            stalled = PROGRESS.failed(topic, {r.partition for r in records})
            log.exception(
                "batch of %d records from %s failed; seeking back for redelivery "
                "(partition stalled for %.1f s)",
                len(records),
                topic,
                stalled,
            )
            await message.nack()
            await asyncio.sleep(_NACK_BACKOFF_SECONDS)
            return
        try:
            await message.ack()
        except Exception:
            # Typically a rebalance took the partitions away: their new owner redelivers
            # the batch, and idempotence (the ledger, the view's dedupe) absorbs it.
            log.warning(
                "offset commit failed for %s; the batch will be replayed", topic, exc_info=True
            )
            return
        _record_progress(message, records)

    broker.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        max_records=options.max_records,
        batch_timeout_ms=options.batch_timeout_ms,
        session_timeout_ms=options.session_timeout_ms,
        heartbeat_interval_ms=options.heartbeat_interval_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        parser=parse_without_headers,
        decoder=records_as_is,
        title=title,
        description=description,
        include_in_schema=include_in_schema,
    )(handle_batch)


def register_command_subscriber(
    broker: KafkaBroker,
    pipeline: CommandPipeline,
    *,
    topic: str,
    group_id: str,
    options: ConsumerOptions,
    include_in_schema: bool = True,
) -> None:
    """One consumer of a command topic; register several in one group to apply batches
    of different partitions at the same time (`SHOPFLOW_CONSUMERS_PER_TOPIC`)."""
    contract_topic = pipeline.route.topic

    async def apply_commands(records: Records) -> None:
        metrics.BATCH_SIZE.labels(contract_topic).observe(len(records))
        try:
            with metrics.BATCH_SECONDS.labels(contract_topic).time():
                await pipeline.handle(records)
        except Exception:
            metrics.BATCH_FAILURES.labels(contract_topic).inc()
            raise

    register_batch_subscriber(
        broker,
        topic,
        apply_commands,
        group_id=group_id,
        options=options,
        title=f"{topic}:consume",
        description=f"Applies {pipeline.route.type_name} commands; answers on "
        f"{pipeline.route.result_topic}.",
        include_in_schema=include_in_schema,
    )
