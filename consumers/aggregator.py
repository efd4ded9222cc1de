"""The sales aggregator: OrderPlaced and OrderCancelled events in, Redis sales buckets
out (units added at the order's placed time, and taken back out when it is cancelled).

Its own consumer group (`<SHOPFLOW_CONSUMER_GROUP>.top-products`) on the orders' result
topic, batch subscriber, manual acknowledgement after the batch is applied: a crash
between applying and committing redelivers the batch, and the view's per-order markers
apply it once. Other event types on the topic (OrderRejected, OrderShipped, ...) are
skipped; a record that does not parse is logged and skipped, never retried forever (the
events are our own, so that would be a bug to fix, not a reason to stall the view).
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
from shopflow.contracts.events import (
    OrderCancelled,
    OrderCancelRejected,
    OrderPlaced,
    OrderRejected,
    OrderShipped,
    OrderShipRejected,
)
from shopflow.domain.clock import Clock
from shopflow.domain.top_products import Sale, SaleKind
from shopflow.persistence.sales_view import SalesView
from shopflow.producers.publisher import DELIVERED, Delivery

log = logging.getLogger(__name__)

SALES_APPLIED = Counter(
    "shopflow_sales_applied_total",
    "OrderPlaced and OrderCancelled events the aggregator applied (new) or found already "
    "applied (duplicate).",
    ["result"],
)
UNREADABLE_EVENTS = Counter(
    "shopflow_aggregator_unreadable_events_total",
    "Records on the orders' result topic that the aggregator could not parse.",
)


# Every event of the orders' result topic: one parse, by `type` (JSON is parsed a second
# time only for what fails it). Only OrderPlaced and OrderCancelled move the view.
_OrderEvent = (
    OrderPlaced
    | OrderRejected
    | OrderCancelled
    | OrderCancelRejected
    | OrderShipped
    | OrderShipRejected
)
_ORDER_EVENTS: TypeAdapter[_OrderEvent] = TypeAdapter(
    Annotated[_OrderEvent, Field(discriminator="type")]
)
_COUNTED_TYPES = frozenset({"OrderPlaced", "OrderCancelled"})


def _is_other_type(value: bytes | None) -> bool:
    """JSON that is not an OrderPlaced or OrderCancelled (a type declared after this
    module, say): nothing to count, and not an error. Only what does not parse, or an
    event of those two types that is not valid, is."""
    try:
        document = json.loads(value or b"")
    except ValueError:
        return False
    return not isinstance(document, dict) or document.get("type") not in _COUNTED_TYPES


def sales_of(records: Sequence[ConsumerRecord[Any, Any]]) -> list[Sale]:
    """The placements and cancellations among `records`, in their order."""
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
        if isinstance(event, OrderPlaced):
            kind, placed_at = SaleKind.PLACED, event.occurred_at
        elif isinstance(event, OrderCancelled):
            kind, placed_at = SaleKind.CANCELLED, event.placed_at
        else:
            continue
        lines = tuple((line.product_id, line.quantity) for line in event.items)
        sales.append(Sale(kind, event.order_id, placed_at, lines))
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
        description="Counts OrderPlaced units into the Redis top-products view, and takes "
        "an OrderCancelled's back out.",
    )
