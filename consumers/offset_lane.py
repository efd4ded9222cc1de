"""The offset lane: one consumer's batches, in order, each overlapping the next, and the
offsets committed only behind the results.

A batch is handed over by FastStream (`consumers.subscribers`), topped up with what the
broker got meanwhile, and worked on (`BatchWork`: decode, apply, publish); its messages'
delivery and then its offset commit go on in the background while the next batch is
worked on. A batch's messages are sent only once the batch before was delivered, and
its offsets committed only after the ones before, so one key's results keep their order
and an offset is never committed ahead of its results. Any error escaping the work seeks
the batch back (and the batch before, if that one was not delivered) and pauses (the
lane's `RetryPolicy`): the batches are redelivered, and the idempotency ledger turns what
was already applied into replays. Records whose delivery failed once wait for their
delivery inside the pipeline when they come again, so that a message Kafka refuses for
good is isolated there. FastStream's own acknowledgement is off (`AckPolicy.MANUAL`): it
would commit a batch's offsets when its handler returns, before the delivery.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka.annotations import KafkaMessage

from shopflow.consumers.offsets import OffsetSpan
from shopflow.consumers.progress import PROGRESS
from shopflow.consumers.retry import RetryPolicy
from shopflow.producers.publisher import DELIVERED, Delivery

log = logging.getLogger(__name__)

# A failed batch is redelivered for as long as it fails (a partition never skips a
# record), each time after the policy's pause: 1 s, every time. A server that is down is
# waited out; the pause spares it a storm of attempts. (Its attempts do not apply.)
REDELIVERY: Final = RetryPolicy(attempts=1, first_pause_s=1.0, factor=1.0)

Records = tuple[ConsumerRecord[Any, Any], ...]


class BatchWork(Protocol):
    async def __call__(self, records: Records, *, after: Delivery, wait: bool) -> Delivery:
        """Apply `records`; send their messages once `after` (the batch before) is
        delivered; return their delivery, awaited first if `wait`."""
        ...


# An offset commit still unanswered after this is given up, as a failed one is: commits
# are cumulative, so the next batch's commit covers this batch's partitions, and at worst
# the batch is replayed. aiokafka's commit started while the group's coordinator was
# gone (a broker restart) was seen to wait forever (`make chaos`, broker-restart), and
# every later commit of the consumer, which waits for the one before, and its graceful
# stop, waited with it.
COMMIT_TIMEOUT_S = 10.0


class InFlight:
    """A process's batches whose messages are being delivered and offsets committed in
    the background, so that a stop can finish them first."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[bool]] = set()
        self.closing = False

    def track(self, task: "asyncio.Task[bool]") -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """From now on every batch finishes before its handler returns; wait for those
        already in the background (and for any that a handler busy when this was called
        hands over meanwhile)."""
        self.closing = True
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _record_progress(consumer: "BatchConsumer", topic: str, committed: dict[int, int]) -> None:
    for partition, next_offset in committed.items():
        try:
            highwater = consumer.highwater(TopicPartition(topic, partition))
        except Exception:  # not every consumer (FastStream's test one) knows it
            highwater = None
        PROGRESS.advanced(topic, partition, None if highwater is None else highwater - next_offset)


@dataclass
class _Flight:
    """A batch applied in PostgreSQL whose messages are being delivered; `done` is True
    once they are and its offsets are committed, False if its delivery failed."""

    span: OffsetSpan
    delivery: Delivery
    done: "asyncio.Task[bool]"


class BatchConsumer(Protocol):
    """What a lane needs of aiokafka's consumer."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...


class ConsumerLane:
    """One consumer's batches, in order, each overlapping the next: see the module's
    docstring. FastStream calls `handle` with each batch."""

    def __init__(
        self,
        topic: str,
        work: BatchWork,
        in_flight: InFlight,
        *,
        max_records: int = 500,
        linger_ms: int = 0,
        redelivery: RetryPolicy = REDELIVERY,
        after_delivery: Callable[[], Awaitable[None]] | None = None,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self._topic = topic
        self._commit_timeout = commit_timeout_s
        self._work = work
        self._in_flight = in_flight
        self._max_records = max_records
        self._linger_ms = linger_ms
        self._redelivery = redelivery
        self._after_delivery = after_delivery  # fault injection: crash before the commit
        self._flight: _Flight | None = None  # the batch before, still in the background
        # Per partition, up to which offset redelivered records must wait for their
        # delivery inside the pipeline (their delivery failed once).
        self._wait_through: dict[int, int] = {}

    async def handle(self, records: Any, message: KafkaMessage) -> None:
        """FastStream's handler of the lane's subscriber: `records` is the batch's body,
        as `consumers.subscribers.records_as_is` decodes it, the records themselves."""
        if not records:
            return
        consumer: BatchConsumer = message.consumer  # type: ignore[assignment]
        records = await self._topped_up(tuple(records), consumer)
        before, self._flight = self._flight, None
        span = OffsetSpan.of(records)
        if before is not None and before.done.done() and not before.done.result():
            # The batch before was not delivered, and its partitions were rewound. This
            # batch is their redelivery, or was fetched before the rewind: then it goes
            # back too, so that nothing is worked on ahead of the undelivered records.
            if any(span.first.get(p, o) != o for p, o in before.span.first.items()):
                self._rewind(consumer, _earliest(span.first, before.span.first))
                return
            before = None
        wait = self._in_flight.closing or any(
            r.offset <= self._wait_through.get(r.partition, -1) for r in records
        )
        try:
            delivery = await self._work(
                records, after=DELIVERED if before is None else before.delivery, wait=wait
            )
        except Exception:
            rewind = span.first
            if before is not None and not await before.done:
                rewind = _earliest(rewind, before.span.first)
            self._rewind(consumer, rewind)
            stalled = PROGRESS.failed(self._topic, set(span.first))
            log.exception(
                "batch of %d records from %s failed; seeking back for redelivery "
                "(partition stalled for %.1f s)",
                len(records),
                self._topic,
                stalled,
            )
            await asyncio.sleep(self._redelivery.pause(0))
            return
        done = asyncio.create_task(self._deliver_then_commit(consumer, span, delivery, before))
        self._in_flight.track(done)
        self._flight = _Flight(span, delivery, done)
        if wait or self._in_flight.closing:  # closing may have begun while it worked
            await done

    async def _topped_up(self, records: Records, consumer: BatchConsumer) -> Records:
        """The batch with what the broker got meanwhile, if it has room: consuming its
        records set off the next fetch, whose records would otherwise wait for the whole
        next batch (`SHOPFLOW_BATCH_LINGER_MS`). FastStream's loop is awaiting this
        handler, so nothing else polls the consumer meanwhile; per partition, the records
        come after those of the batch."""
        room = self._max_records - len(records)
        if room <= 0 or self._linger_ms <= 0:
            return records
        try:
            more = await consumer.getmany(timeout_ms=self._linger_ms, max_records=room)
        except Exception:
            # The batch goes on as delivered: escaping from here, the error would leave
            # it neither applied nor sought back, and the next batch's commit would pass
            # over it. aiokafka raises a fetch error (a record too large, no longer
            # authorized) once, having consumed nothing; FastStream's own fetches come
            # next. (Under FastStream's TestKafkaBroker, whose stand-in consumer has no
            # getmany, this is where its batches go on.)
            log.warning("topping up a batch from %s failed", self._topic, exc_info=True)
            return records
        if not more:
            return records
        return records + tuple(r for partition in more.values() for r in partition)

    async def _deliver_then_commit(
        self, consumer: BatchConsumer, span: OffsetSpan, delivery: Delivery, before: _Flight | None
    ) -> bool:
        """Commit the batch's offsets once its messages are delivered and the batch
        before committed; if the delivery fails, seek back to redeliver the batch (when
        a next batch is already being worked on, it fails on this too and seeks back as
        far)."""
        try:
            await delivery.wait()
        except Exception:
            log.warning(
                "results of a batch from %s were not delivered; seeking back to redeliver it",
                self._topic,
                exc_info=True,
            )
            for partition, next_offset in span.next.items():
                self._wait_through[partition] = max(
                    next_offset - 1, self._wait_through.get(partition, -1)
                )
            self._rewind(consumer, span.first)
            return False
        if self._after_delivery is not None:
            await self._after_delivery()
        if before is not None:
            await before.done  # offsets are committed in order
        try:
            await self._commit(consumer, span.next)
        except Exception:
            # Typically a rebalance took the partitions away: their new owner redelivers
            # the batch, and idempotence (the ledger, the view's dedupe) absorbs it.
            log.warning(
                "offset commit failed for %s; the batch will be replayed",
                self._topic,
                exc_info=True,
            )
            return True
        for partition, next_offset in span.next.items():
            if self._wait_through.get(partition, -1) < next_offset:
                self._wait_through.pop(partition, None)
        _record_progress(consumer, self._topic, span.next)
        return True

    async def _commit(self, consumer: BatchConsumer, offsets: dict[int, int]) -> None:
        """Commit, or raise TimeoutError after the commit timeout. The commit runs as a
        task of its own that is cancelled and left behind on a timeout, not awaited:
        aiokafka's commit does not always end when cancelled."""
        commit = asyncio.ensure_future(
            consumer.commit({TopicPartition(self._topic, p): o for p, o in offsets.items()})
        )
        done, _ = await asyncio.wait({commit}, timeout=self._commit_timeout)
        if not done:
            commit.cancel()
            commit.add_done_callback(_forget)
            raise TimeoutError(f"offset commit unanswered after {self._commit_timeout:g} s")
        commit.result()

    def _rewind(self, consumer: BatchConsumer, offsets: dict[int, int]) -> None:
        for partition, offset in offsets.items():
            try:
                consumer.seek(TopicPartition(self._topic, partition), offset)
            except IllegalStateError:
                # No longer ours (a rebalance): its new owner starts from the committed
                # offset, which is at or before this one.
                log.info("%s[%d] was revoked before it could be rewound", self._topic, partition)


def _forget(task: "asyncio.Future[None]") -> None:
    """Retrieve what a commit left behind ended with, so that asyncio does not log it."""
    if not task.cancelled():
        task.exception()


def _earliest(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    return {p: min(o for o in (a.get(p), b.get(p)) if o is not None) for p in a.keys() | b.keys()}
