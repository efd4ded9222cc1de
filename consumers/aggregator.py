"""The sales aggregator: OrderPlaced events in, Redis sales buckets out.

Its own consumer group (`<SHOPFLOW_CONSUMER_GROUP>.top-products`) on the orders' result
topic, batch subscriber, manual acknowledgement after the batch is applied: a crash
between applying and committing redelivers the batch, and the view's per-event dedupe
counts it once. Other event types on the topic (OrderRejected) are skipped; a record
that does not parse is logged and skipped, never retried forever (the events are our
own, so that would be a bug to fix, not a reason to stall the view).
"""

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import Counter
from pydantic import Field, TypeAdapter, ValidationError

from shopflow.consumers.offset_lane import InFlight, Records
from shopflow.consumers.subscribers import ConsumerOptions, register_batch_subscriber
from shopflow.contracts.events import OrderPlaced, OrderRejected
from shopflow.domain.clock import Clock
from shopflow.domain.top_products import Sale
from shopflow.persistence.sales_view import SalesView
from shopflow.producers.publisher import DELIVERED, Delivery

log = logging.getLogger(__name__)

SALES_APPLIED = Counter(
    "shopflow_sales_applied_total",
    "OrderPlaced events the aggregator counted (new) or found already counted (duplicate).",
    ["result"],
)
UNREADABLE_EVENTS = Counter(
    "shopflow_aggregator_unreadable_events_total",
    "Records on the orders' result topic that the aggregator could not parse.",
)


# The orders' result topic carries OrderPlaced and OrderRejected: one parse, by `type`
# (JSON is parsed a second time only for what fails it).
_ORDER_EVENTS: TypeAdapter[OrderPlaced | OrderRejected] = TypeAdapter(
    Annotated[OrderPlaced | OrderRejected, Field(discriminator="type")]
)


def _is_other_type(value: bytes | None) -> bool:
    """JSON that is not an OrderPlaced (an OrderRejected, say): nothing to count, and
    not an error. Only what does not parse, or an OrderPlaced that is not valid, is."""
    try:
        document = json.loads(value or b"")
    except ValueError:
        return False
    return not isinstance(document, dict) or document.get("type") != "OrderPlaced"


def sales_of(records: Sequence[ConsumerRecord[Any, Any]]) -> list[Sale]:
    sales = []
    for record in records:
        try:
            event = _ORDER_EVENTS.validate_json(record.value or b"")
        except ValidationError:
            if _is_other_type(record.value):
                continue
            UNREADABLE_EVENTS.inc()
            log.error(
                "unreadable record %s[%d]@%d skipped", record.topic, record.partition, record.offset
            )
            continue
        if not isinstance(event, OrderPlaced):
            continue
        sales.append(
            Sale(
                str(event.event_id),
                event.occurred_at,
                tuple((line.product_id, line.quantity) for line in event.items),
            )
        )
    return sales


def register_sales_aggregator(
    broker: KafkaBroker,
    view: SalesView,
    *,
    topic: str,
    group_id: str,
    clock: Clock,
    options: ConsumerOptions,
    in_flight: InFlight,
    after_apply: Callable[[], Awaitable[None]] | None = None,
) -> None:
    async def aggregate(records: Records, after: Delivery, wait: bool) -> Delivery:
        # Nothing to send: the view is applied, and the offsets can follow.
        sales = sales_of(records)
        new = await view.apply(sales, now=clock())
        if after_apply is not None:
            await after_apply()
        SALES_APPLIED.labels("new").inc(new)
        SALES_APPLIED.labels("duplicate").inc(len(sales) - new)
        return DELIVERED

    register_batch_subscriber(
        broker,
        topic,
        aggregate,
        group_id=group_id,
        options=options,
        in_flight=in_flight,
        title=f"{topic}:aggregate",
        description="Counts OrderPlaced units into the Redis top-products view.",
    )
