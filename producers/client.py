"""The client upstream services (and the tests, and the CLI) use to send commands and,
if they wish, await each command's result event, matched on `command_id`:

    kafka = KafkaConnection.parse("127.0.0.1:9092", principal="shopflow-ops", password=...)
    async with ShopflowClient(kafka) as client:
        event = await client.send_and_wait(ChargePoints(command_id="c-1", user_id=1, amount=5))

It connects as the principal it is given, which must be allowed to write the command
topics and, to wait for results, read the result topics (CONTRACT.md, Access). It keys
every command by its entity id and sends with an idempotent producer; results are read
from the moment it starts. Each send is a "<topic> send" span of the caller's trace, and
the command carries its context in a `traceparent` header (docs/operating.md, "Traces").
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from shopflow.contracts.commands import Command
from shopflow.contracts.dead_letters import DeadLetter
from shopflow.contracts.events import ResultEvent, parse_event
from shopflow.contracts.topics import DEAD_LETTERS, EVENT_TOPICS, ROUTES_BY_TYPE, Topics
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.producers.publisher import reliable_producer
from shopflow.producers.tracing import Headers, producer_span, trace_headers

log = logging.getLogger(__name__)


class ResultTimeout(TimeoutError):
    pass


async def topic_partitions(
    producer: AIOKafkaProducer, topic: str, *, timeout: float = 15.0
) -> list[int]:
    """The topic's partition numbers. Right after a topic is created the broker may not
    list its partitions yet, so this asks again until it does (or fails after `timeout`)."""
    async with asyncio.timeout(timeout):
        while True:
            found = await producer.partitions_for(topic)
            if found:
                return sorted(found)
            await asyncio.sleep(0.1)


class ShopflowClient:
    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        topics: Topics | None = None,
        watch_results: bool = True,
        max_request_size: int = 1024 * 1024,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._kafka = kafka
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._topics = topics or Topics()
        self._watch = watch_results
        self._max_request_size = max_request_size
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._results: dict[str, list[ResultEvent]] = defaultdict(list)
        self._first_seen: dict[str, float] = {}
        self.dead_letters: list[DeadLetter] = []
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._producer = reliable_producer(
            self._kafka,
            max_request_size=self._max_request_size,
            linger_ms=2,
            client_id="shopflow-client",
        )
        await self._producer.start()
        if self._watch:
            await self._start_reader()

    async def _start_reader(self) -> None:
        names = [self._topics.name(t) for t in (*EVENT_TOPICS, DEAD_LETTERS)]
        consumer = self._kafka.consumer(enable_auto_commit=False)
        assert self._producer is not None
        partitions = [
            TopicPartition(topic, p)
            for topic in names
            for p in await topic_partitions(self._producer, topic)
        ]
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # materialize the positions before anything is sent
            await consumer.position(tp)
        self._consumer = consumer
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            async with self._changed:
                for tp, records in batches.items():
                    for record in records:
                        self._take(tp, record.offset, record.value)
                self._changed.notify_all()

    def _take(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        """Record one result event or dead letter; skip (with a warning) what is neither.

        Our topics may carry someone else's records, an older format, a tombstone, or
        bytes no JSON parser takes (nesting deep enough for a RecursionError, which is not
        a ValueError). Any failure to read one record is caught, whatever its class: the
        reader must outlive it, or every later wait times out."""
        reason = "no value (a tombstone)"
        if value is not None:
            try:
                if tp.topic == self._topics.dead_letters:
                    self.dead_letters.append(DeadLetter.model_validate_json(value))
                else:
                    event = parse_event(value)
                    self._results[event.command_id].append(event)
                    loop_time = asyncio.get_running_loop().time()
                    self._first_seen.setdefault(event.command_id, loop_time)
                return
            except Exception as error:
                reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        log.warning(
            "skipped unreadable record %s[%d]@%d: %s", tp.topic, tp.partition, offset, reason
        )

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, command: Command) -> None:
        """Publish a command keyed by its entity id; returns once Kafka has it."""
        route = ROUTES_BY_TYPE[type(command)]
        await self.send_raw(
            self._topics.name(route.topic),
            str(route.entity_id(command)).encode(),
            command.model_dump_json(exclude_none=True).encode(),
        )

    async def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> RecordMetadata:
        """Publish arbitrary bytes (for tests and tools that need malformed messages);
        returns where Kafka put them. The record's headers are `headers` if given, else
        the trace context of its send span (see the module's docstring)."""
        assert self._producer is not None, "start the client first"
        span = producer_span(self._tracer, topic, "send", key=key, partition=partition)
        with trace.use_span(span, end_on_exit=True):
            metadata: RecordMetadata = await self._producer.send_and_wait(
                topic,
                value,
                key=key,
                partition=partition,
                headers=trace_headers(span) if headers is None else headers,
            )
        return metadata

    async def send_and_wait(self, command: Command, timeout: float = 30.0) -> ResultEvent:
        await self.send(command)
        return await self.wait_for_result(command.command_id, timeout=timeout)

    async def wait_for_result(
        self, command_id: str, *, count: int = 1, timeout: float = 30.0
    ) -> ResultEvent:
        """The first result for `command_id`, once at least `count` have arrived."""
        events = await self.wait_for_results(command_id, count=count, timeout=timeout)
        return events[0]

    async def wait_for_results(
        self, command_id: str, *, count: int = 1, timeout: float = 30.0
    ) -> list[ResultEvent]:
        if not self._watch:
            raise RuntimeError("this client was started with watch_results=False")
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self._results[command_id]) >= count)
        except TimeoutError as exc:
            got = len(self._results[command_id])
            raise ResultTimeout(
                f"{got} of {count} results for command {command_id!r} within {timeout}s"
            ) from exc
        return list(self._results[command_id])

    def results(self, command_id: str) -> list[ResultEvent]:
        """Results seen so far for `command_id` (redeliveries included)."""
        return list(self._results.get(command_id, ()))

    def first_seen_at(self, command_id: str) -> float | None:
        """When (event-loop time) the first result for `command_id` was read, if it was."""
        return self._first_seen.get(command_id)

    async def wait_for_dead_letter(self, predicate: Any, *, timeout: float = 30.0) -> DeadLetter:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: any(predicate(d) for d in self.dead_letters))
        except TimeoutError as exc:
            raise ResultTimeout(f"no matching dead letter within {timeout}s") from exc
        return next(d for d in self.dead_letters if predicate(d))
