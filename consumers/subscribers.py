"""The FastStream wiring of the command consumers: one batch subscriber per consumer of
a command topic, each feeding an offset lane (`consumers.offset_lane`).

FastStream runs the consumers (the group, the fetch loop, the broker's lifecycle, the
AsyncAPI document, `TestKafkaBroker`); the lane decides when offsets are committed and
when a batch goes back. Its subscriber options:
- `AckPolicy.MANUAL`: the lane commits, after the batch's results were delivered;
  FastStream's other policies would commit too early or retry a poison batch forever.
- Decoding is the pipeline's, which dead-letters what it cannot decode: the decoder
  hands the records over as they are, rather than JSON failing outside the handler.
- `auto_offset_reset="earliest"`: a new group starts at the beginning, so commands sent
  before the service first started are not skipped.
- One consumer group per command topic (`<SHOPFLOW_CONSUMER_GROUP>.<topic>`), so a
  rebalance of one topic does not pause the others.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, Topic
from faststream.middlewares import AckPolicy

from shopflow.consumers.offset_lane import BatchWork, ConsumerLane, InFlight
from shopflow.consumers.pipeline import CommandPipeline


def _is_text(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _with_text_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    if not record.headers or all(_is_text(v) for _, v in record.headers):
        return record  # nearly every record: no header at all, or none to drop
    return dataclasses.replace(record, headers=[(k, v) for k, v in record.headers if _is_text(v)])


async def parse_with_text_headers(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[Any]],
) -> Any:
    # FastStream's parser decodes every header's value as UTF-8 and would raise on a
    # sender's binary header (or one with no value), losing the whole batch to an error
    # outside our handler. Those headers are dropped before parsing; the others are kept,
    # for a sender's `traceparent` (consumers.tracing) and FastStream's own tracing.
    return await original(tuple(map(_with_text_headers, records)))


async def records_as_is(message: Any, original: Any) -> Any:
    """The body of a batch is its records: decoding is the pipeline's, which dead-letters
    what it cannot decode, rather than FastStream's JSON failing outside the handler."""
    return message.raw_message


@dataclass(frozen=True)
class ConsumerOptions:
    """How each batch consumer polls and stays in its group (the SHOPFLOW_* settings)."""

    max_records: int
    batch_timeout_ms: int
    linger_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int


def register_batch_subscriber(
    broker: KafkaBroker,
    topic: str,
    work: BatchWork,
    *,
    group_id: str,
    options: ConsumerOptions,
    in_flight: InFlight,
    title: str,
    description: str,
    include_in_schema: bool = True,
    after_delivery: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A batch subscriber whose batches go through a `ConsumerLane`: offsets committed
    only after `work` applied a batch and its messages were delivered, while the next
    batch is already being worked on; a batch seeked back (redelivery, after a pause)
    when `work` raises."""
    lane = ConsumerLane(
        topic,
        work,
        in_flight,
        max_records=options.max_records,
        linger_ms=options.linger_ms,
        after_delivery=after_delivery,
    )

    broker.subscriber(
        # Not FastStream's to create: provisioning makes the topics as an admin, and the
        # service's principal may not (CONTRACT.md, Access).
        Topic(topic, declare=False),
        batch=True,
        group_id=group_id,
        max_records=options.max_records,
        batch_timeout_ms=options.batch_timeout_ms,
        session_timeout_ms=options.session_timeout_ms,
        heartbeat_interval_ms=options.heartbeat_interval_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        # A sender's `reply_to` header (headers are kept now) must not make FastStream
        # publish the handler's return value to a topic of the sender's choosing.
        no_reply=True,
        parser=parse_with_text_headers,
        decoder=records_as_is,
        title=title,
        description=description,
        include_in_schema=include_in_schema,
    )(lane.handle)


def register_command_subscriber(
    broker: KafkaBroker,
    pipeline: CommandPipeline,
    *,
    topic: str,
    group_id: str,
    options: ConsumerOptions,
    in_flight: InFlight,
    include_in_schema: bool = True,
    after_delivery: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """One consumer of a command topic; register several in one group to apply batches
    of different partitions at the same time (`SHOPFLOW_CONSUMERS_PER_TOPIC`)."""
    register_batch_subscriber(
        broker,
        topic,
        pipeline.handle,
        group_id=group_id,
        options=options,
        in_flight=in_flight,
        after_delivery=after_delivery,
        title=f"{topic}:consume",
        description=f"Applies {pipeline.route.type_name} commands; answers on "
        f"{pipeline.route.result_topic}.",
        include_in_schema=include_in_schema,
    )
