"""The composition root: builds the engine, the Redis client and the broker with its
subscribers from settings, and starts and stops them in order. Nothing here runs at
import time, so tests build as many runtimes as they need."""

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.types import BrokerMiddleware
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.aiokafka_on_uvloop import tolerate_closed_transports
from shopflow.consumers.aggregator import register_sales_aggregator
from shopflow.consumers.applier import BatchApplier
from shopflow.consumers.consumer_state import CONSUMER_LAG, check_consumers_running
from shopflow.consumers.offset_lane import InFlight
from shopflow.consumers.pipeline import CommandPipeline
from shopflow.consumers.ports import Database
from shopflow.consumers.subscribers import ConsumerOptions, register_command_subscriber
from shopflow.consumers.tracing import CommandTracer
from shopflow.contracts.topics import COMMAND_ROUTES, ORDERS_EVENTS, Topics
from shopflow.domain.clock import Clock, utc_now
from shopflow.kafka_access import SERVICE, kafka_connection
from shopflow.kafka_admin import topic_max_message_bytes
from shopflow.persistence.database import create_engine
from shopflow.persistence.payments import PointsPaymentGateway
from shopflow.persistence.sales_rebuild import rebuild_sales_view
from shopflow.persistence.sales_view import SalesView
from shopflow.persistence.unit_of_work import GatewayFactory, PgDatabase
from shopflow.producers.dead_letters import DeadLetterLimits, dead_letter_room
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.producers.publisher import KafkaMessageSink, MessageSink
from shopflow.redis_connection import redis_client
from shopflow.settings import FaultInjection, Settings

log = logging.getLogger(__name__)


def _crash_at(point: FaultInjection) -> Callable[[], Awaitable[None]]:
    async def exit_abruptly() -> None:
        log.error("fault injection: exiting abruptly (%s)", point.value)
        os._exit(86)

    return exit_abruptly


def _crash_hook(settings: Settings, point: FaultInjection) -> Callable[[], Awaitable[None]] | None:
    """The crash of the recovery tests at `point`, if the settings ask for it there."""
    return _crash_at(point) if settings.fault_injection is point else None


def build_broker(
    settings: Settings, kafka: KafkaConnection, *, tracer_provider: TracerProvider | None = None
) -> KafkaBroker:
    # Results and dead letters go through the sink's own producer (producers.publisher);
    # FastStream's, configured alike (idempotent, acks=all, no linger), publishes nothing
    # of ours.
    # FastStream's Prometheus middleware, on the default registry (the one /metrics
    # serves): faststream_received_messages_total, ..._processed_messages_duration_seconds
    # and the rest, per handler (the topic). What it can and cannot see of our batches
    # (records the lane tops a batch up with, delivery and commit after the handler
    # returns) is in tests/integration/test_worker_http.py.
    return KafkaBroker(
        list(kafka.bootstrap_servers),
        security=kafka.faststream_security(),
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        max_request_size=settings.producer_max_request_size,
        graceful_timeout=settings.graceful_timeout_s,
        client_id="shopflow",
        logger=logging.getLogger("shopflow.kafka"),
        # The level of FastStream's service messages that name none of their own: its
        # "Received" and "Processed" per message (per batch here), from the logging
        # middleware every subscriber has (faststream/middlewares/logging.py), and each
        # subscriber's "waiting for messages" at start. At INFO they were two lines per
        # batch, hundreds a second under load; the pipeline logs one line per batch with
        # what it did (consumers.pipeline). Errors, warnings and partition assignments
        # have levels of their own and keep them.
        log_level=logging.DEBUG,
        middlewares=_middlewares(tracer_provider),
    )


def _middlewares(tracer_provider: TracerProvider | None) -> list[BrokerMiddleware[Any, Any]]:
    middlewares: list[BrokerMiddleware[Any, Any]] = []
    if tracer_provider is not None:
        # FastStream's tracing: a span per batch, each subscriber's "<topic> process",
        # the parent of the batch's statements and of its records' spans or the target of
        # their links (consumers.tracing). First, so the other middlewares run inside it.
        # Imported only then: with tracing off, none of it is loaded or runs.
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=tracer_provider))
    middlewares.append(KafkaPrometheusMiddleware(registry=REGISTRY, app_name="shopflow"))
    return middlewares


def consumer_options(settings: Settings) -> ConsumerOptions:
    return ConsumerOptions(
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        linger_ms=settings.batch_linger_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )


def register_command_consumers(
    broker: KafkaBroker,
    settings: Settings,
    *,
    database: Database,
    sink: MessageSink,
    limits: DeadLetterLimits,
    clock: Clock,
    in_flight: InFlight,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """The consuming side's wiring, the top-products aggregator aside: per command topic,
    `SHOPFLOW_CONSUMERS_PER_TOPIC` subscribers in its group, applying their batches to
    `database` and handing results and dead letters to `sink`. `Runtime.build` passes
    PostgreSQL and the Kafka sink; tests/unit/test_wiring_testbroker.py passes in-memory
    ones and runs this very wiring under FastStream's TestKafkaBroker."""
    topics = Topics(settings.topic_prefix)
    options = consumer_options(settings)
    tracer = None if tracer_provider is None else CommandTracer(tracer_provider)
    for route in COMMAND_ROUTES:
        applier = BatchApplier(
            database,
            clock=clock,
            outage_wait_s=settings.db_outage_wait_s,
            before_commit=_crash_hook(settings, FaultInjection.EXIT_BEFORE_DB_COMMIT),
            after_commit=_crash_hook(settings, FaultInjection.EXIT_AFTER_DB_COMMIT),
        )
        pipeline = CommandPipeline(route, applier, sink, limits=limits, clock=clock, tracer=tracer)
        for consumer in range(settings.consumers_per_topic):
            register_command_subscriber(
                broker,
                pipeline,
                topic=topics.name(route.topic),
                group_id=settings.command_group(topics.name(route.topic)),
                options=options,
                in_flight=in_flight,
                include_in_schema=consumer == 0,
                after_delivery=_crash_hook(settings, FaultInjection.EXIT_AFTER_PUBLISH),
            )


class Consumers(StrEnum):
    """Which consumers a consuming process runs. `all` by default; a worker may run the
    command consumers alone and another the sales aggregator alone, so that the
    aggregator's share of an order (about 15 % of a worker's order drain, measured:
    docs/measurements.md#order-path) is taken on a core of its own, and each part scales
    by its own topics' partitions."""

    ALL = "all"
    COMMANDS = "commands"  # one consumer group per command topic
    SALES = "sales"  # the top-products aggregator on the orders' result topic


@dataclass
class Runtime:
    settings: Settings
    kafka: KafkaConnection  # as the service's principal
    engine: AsyncEngine
    redis: Redis
    broker: KafkaBroker
    topics: Topics
    sales_view: SalesView
    clock: Clock
    dead_letter_limits: DeadLetterLimits
    sink: KafkaMessageSink | None  # publishes results and dead letters, when consuming
    in_flight: InFlight  # batches being delivered and acknowledged in the background

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        consume: bool = True,
        consumers: Consumers = Consumers.ALL,
        clock: Clock = utc_now,
        payment_gateway: GatewayFactory = PointsPaymentGateway,
        after_apply: Callable[[], Awaitable[None]] | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> "Runtime":
        """The runtime of `settings`; with `consume`, running `consumers`; with
        `tracer_provider`, traced (shopflow.tracing)."""
        # Workers run on uvloop (shopflow.cli), `serve` too (uvicorn picks it): without
        # this, a broker restart could leave a consumer without its group coordinator for
        # good (shopflow.aiokafka_on_uvloop).
        tolerate_closed_transports()
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            connect_timeout_s=settings.db_connect_timeout_s,
        )
        # One server, or the primary the Sentinels name; a command on a connection Redis
        # closed is tried again on a new one (shopflow.redis_connection).
        redis = redis_client(settings)
        kafka = kafka_connection(settings, SERVICE)
        broker = build_broker(settings, kafka, tracer_provider=tracer_provider)
        topics = Topics(settings.topic_prefix)
        sales_view = SalesView(redis, prefix=settings.redis_key_prefix)
        limits = DeadLetterLimits()
        sink = None
        in_flight = InFlight()
        if consume and consumers != Consumers.SALES:
            sink = KafkaMessageSink(
                kafka,
                topics,
                max_request_size=settings.producer_max_request_size,
                client_id="shopflow",
                tracer_provider=tracer_provider,
            )
            register_command_consumers(
                broker,
                settings,
                database=PgDatabase(engine, gateway=payment_gateway),
                sink=sink,
                limits=limits,
                clock=clock,
                in_flight=in_flight,
                tracer_provider=tracer_provider,
            )
        if consume and consumers != Consumers.COMMANDS:
            register_sales_aggregator(
                broker,
                sales_view,
                topic=topics.name(ORDERS_EVENTS),
                group_id=settings.sales_aggregator_group,
                clock=clock,
                options=consumer_options(settings),
                in_flight=in_flight,
                after_apply=after_apply,
            )
        return cls(
            settings,
            kafka,
            engine,
            redis,
            broker,
            topics,
            sales_view,
            clock,
            limits,
            sink,
            in_flight,
        )

    async def rebuild_sales_view(self, now: datetime | None = None) -> bool:
        return await rebuild_sales_view(self.sales_view, self.engine, now or self.clock())

    async def start(self) -> None:
        if self.sink is not None:
            await self._size_dead_letters()
            await self.sink.start()
        await self.broker.start()
        CONSUMER_LAG.watch(self.broker)

    # Readiness checks (GET /health/ready of `serve` and of `worker`): each returns when
    # its part answers and raises when it does not.

    async def database_ready(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis_ready(self) -> None:
        await self.redis.ping()

    async def kafka_ready(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka does not answer")

    async def consumers_ready(self) -> None:
        await check_consumers_running(self.broker)

    async def _size_dead_letters(self) -> None:
        # Dead letters are sized to the limits in force, read now rather than assumed;
        # raises (and the process does not start) if they could not keep the contract.
        topic_limit = await topic_max_message_bytes(self.kafka, self.topics.dead_letters)
        self.dead_letter_limits.max_value_bytes = dead_letter_room(
            self.settings.producer_max_request_size, topic_limit
        )
        log.info(
            "dead letters sized to at most %d bytes (producer max_request_size %d, "
            "%s max.message.bytes %d)",
            self.dead_letter_limits.max_value_bytes,
            self.settings.producer_max_request_size,
            self.topics.dead_letters,
            topic_limit,
        )

    async def stop(self) -> None:
        # The consumers first: batches whose results are being delivered are finished and
        # acknowledged; then the broker, whose batches in flight finish (or are left
        # unacknowledged, to be redelivered) while the database is still there.
        await self.in_flight.close()
        await self.broker.stop()
        CONSUMER_LAG.forget(self.broker)  # its consumers are gone (their lag went with them)
        if self.sink is not None:
            await self.sink.stop()
        await self.redis.aclose()
        await self.engine.dispose()
