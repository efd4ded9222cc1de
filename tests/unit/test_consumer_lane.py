"""A consumer's batches overlap (no I/O): the next batch is worked on while the one
before is delivered, yet offsets are committed only after delivery and in order, and a
batch whose delivery failed goes back, with any batch after it, for redelivery."""

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import cast

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import RecordTooLargeError
from faststream.kafka.annotations import KafkaMessage

from shopflow.consumers.offset_lane import REDELIVERY, ConsumerLane, InFlight, Records
from shopflow.producers.publisher import DELIVERED, Delivery

TOPIC = "shop.points.charge"
NO_PAUSE = replace(REDELIVERY, first_pause_s=0)


def _message(consumer: "FakeConsumer") -> KafkaMessage:
    """What FastStream hands the lane beside the records: the message, with its consumer."""
    return cast(KafkaMessage, SimpleNamespace(consumer=consumer))


def _batch(partition: int, first: int, count: int) -> Records:
    return tuple(
        ConsumerRecord(TOPIC, partition, first + i, 0, 0, b"7", b"{}", None, 1, 2, ())
        for i in range(count)
    )


class FakeConsumer:
    def __init__(self, fetched: Records = ()) -> None:
        self.log: list[tuple[str, dict[int, int]]] = []
        self.fetched = list(fetched)  # what the broker got meanwhile

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        taken, self.fetched = self.fetched[:max_records], self.fetched[max_records:]
        self.log.append(("getmany", {0: len(taken)}))
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for record in taken:
            out.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return out

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.log.append(("seek", {partition.partition: offset}))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(("commit", {tp.partition: o for tp, o in offsets.items()}))

    def highwater(self, partition: TopicPartition) -> int | None:
        return None


class FakeWork:
    """Each batch's delivery is a future the test settles; `after` is awaited before
    'sending', as the pipeline does; records what it was asked."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[None]] = []
        self.calls: list[tuple[int, bool]] = []  # (first offset, wait)

    async def __call__(self, records: Records, after: Delivery, wait: bool) -> Delivery:
        self.calls.append((records[0].offset, wait))
        await after.wait()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        delivery = Delivery([ack])
        if wait:
            await delivery.wait()
        return delivery


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_next_batch_is_worked_on_while_the_one_before_is_delivered() -> None:
    work, consumer = FakeWork(), FakeConsumer()
    lane = ConsumerLane(TOPIC, work, InFlight(), redelivery=NO_PAUSE)

    await lane.handle(_batch(0, 10, 5), _message(consumer))  # returns before its delivery
    assert consumer.log == []
    second = asyncio.create_task(lane.handle(_batch(0, 15, 5), _message(consumer)))
    await _settle()
    assert work.calls == [(10, False), (15, False)]
    assert not second.done()  # waits for the first delivery before sending its own

    work.acks[0].set_result(None)
    await second
    await _settle()
    assert consumer.log == [("commit", {0: 15})]
    work.acks[1].set_result(None)
    await _settle()
    assert consumer.log == [("commit", {0: 15}), ("commit", {0: 20})]


async def test_offsets_are_committed_in_order_even_when_deliveries_finish_out_of_order() -> None:
    consumer = FakeConsumer()
    # Work that does not wait for `after` before sending, so deliveries can finish in any
    # order.
    acks: list[asyncio.Future[None]] = []

    async def sends_at_once(records: Records, after: Delivery, wait: bool) -> Delivery:
        acks.append(asyncio.get_running_loop().create_future())
        return Delivery([acks[-1]])

    lane = ConsumerLane(TOPIC, sends_at_once, InFlight(), redelivery=NO_PAUSE)
    await lane.handle(_batch(0, 0, 3), _message(consumer))
    await lane.handle(_batch(1, 0, 4), _message(consumer))
    acks[1].set_result(None)
    await _settle()
    assert consumer.log == []  # the second waits for the first's commit
    acks[0].set_result(None)
    await _settle()
    assert consumer.log == [("commit", {0: 3}), ("commit", {1: 4})]


async def test_a_failed_delivery_rewinds_its_batch_and_the_redelivery_waits_for_its_own() -> None:
    work, consumer = FakeWork(), FakeConsumer()
    lane = ConsumerLane(TOPIC, work, InFlight(), redelivery=NO_PAUSE)

    await lane.handle(_batch(0, 10, 5), _message(consumer))
    work.acks[0].set_exception(ConnectionResetError("broker went away"))
    await _settle()
    assert consumer.log == [("seek", {0: 10})]  # nothing committed

    # Fetched before the rewind: goes back too, unworked.
    await lane.handle(_batch(0, 15, 5), _message(consumer))
    assert consumer.log[-1] == ("seek", {0: 10})
    assert work.calls == [(10, False)]

    redelivered = asyncio.create_task(lane.handle(_batch(0, 10, 5), _message(consumer)))
    await _settle()
    assert work.calls[-1] == (10, True)
    assert not redelivered.done()
    work.acks[1].set_result(None)
    await redelivered  # waited for its delivery and its commit
    assert consumer.log[-1] == ("commit", {0: 15})

    await lane.handle(_batch(0, 15, 5), _message(consumer))  # past it: overlapping again
    assert work.calls[-1] == (15, False)


async def test_a_batch_after_an_undelivered_one_rewinds_both() -> None:
    work, consumer = FakeWork(), FakeConsumer()
    lane = ConsumerLane(TOPIC, work, InFlight(), redelivery=NO_PAUSE)

    await lane.handle(_batch(0, 10, 5) + _batch(1, 40, 2), _message(consumer))
    second = asyncio.create_task(
        lane.handle(_batch(0, 15, 5) + _batch(2, 7, 1), _message(consumer))
    )
    await _settle()
    work.acks[0].set_exception(ConnectionResetError("broker went away"))
    await second

    seeks: dict[int, int] = {}
    for what, offsets in consumer.log:
        assert what == "seek"
        for partition, offset in offsets.items():
            seeks[partition] = min(offset, seeks.get(partition, offset))
    # Each partition back to the first record not delivered; nothing committed.
    assert seeks == {0: 10, 1: 40, 2: 7}
    assert len(work.acks) == 1  # the second batch never sent anything


async def test_a_failing_batch_is_rewound_while_the_one_before_still_commits() -> None:
    consumer = FakeConsumer()
    acks: list[asyncio.Future[None]] = []

    async def fails_second(records: Records, after: Delivery, wait: bool) -> Delivery:
        if records[0].offset == 15:
            raise ConnectionResetError("database went away")
        acks.append(asyncio.get_running_loop().create_future())
        return Delivery([acks[-1]])

    lane = ConsumerLane(TOPIC, fails_second, InFlight(), redelivery=NO_PAUSE)
    await lane.handle(_batch(0, 10, 5), _message(consumer))
    second = asyncio.create_task(lane.handle(_batch(0, 15, 5), _message(consumer)))
    await _settle()
    acks[0].set_result(None)
    await second

    assert ("commit", {0: 15}) in consumer.log
    assert ("seek", {0: 15}) in consumer.log
    assert ("seek", {0: 10}) not in consumer.log


async def test_a_stop_finishes_batches_in_the_background_and_then_works_inline() -> None:
    work, consumer, in_flight = FakeWork(), FakeConsumer(), InFlight()
    lane = ConsumerLane(TOPIC, work, in_flight, redelivery=NO_PAUSE)
    await lane.handle(_batch(0, 10, 5), _message(consumer))

    closing = asyncio.create_task(in_flight.close())
    await _settle()
    assert not closing.done()  # waits for the batch being delivered
    work.acks[0].set_result(None)
    await closing
    assert consumer.log == [("commit", {0: 15})]

    last = asyncio.create_task(lane.handle(_batch(0, 15, 1), _message(consumer)))
    await _settle()
    assert work.calls[-1] == (15, True)
    work.acks[1].set_result(None)
    await last
    assert consumer.log[-1] == ("commit", {0: 16})  # committed before the handler returned


async def test_nothing_to_deliver_commits_at_once() -> None:
    consumer = FakeConsumer()

    async def aggregate(records: Records, after: Delivery, wait: bool) -> Delivery:
        return DELIVERED

    lane = ConsumerLane(TOPIC, aggregate, InFlight(), redelivery=NO_PAUSE)
    await lane.handle(_batch(3, 0, 2), _message(consumer))
    await _settle()
    assert consumer.log == [("commit", {3: 2})]


async def test_a_batch_with_room_takes_what_the_broker_got_meanwhile() -> None:
    consumer = FakeConsumer(fetched=_batch(0, 13, 4) + _batch(1, 0, 2))
    seen: list[tuple[int, int]] = []

    async def work(records: Records, after: Delivery, wait: bool) -> Delivery:
        seen.extend((r.partition, r.offset) for r in records)
        return DELIVERED

    lane = ConsumerLane(TOPIC, work, InFlight(), max_records=8, linger_ms=2, redelivery=NO_PAUSE)
    await lane.handle(_batch(0, 10, 3), _message(consumer))
    await _settle()

    # Up to the batch's room (8), each partition's records after those it had.
    assert seen == [(0, 10), (0, 11), (0, 12), (0, 13), (0, 14), (0, 15), (0, 16), (1, 0)]
    assert consumer.log[-1] == ("commit", {0: 17, 1: 1})
    await lane.handle(_batch(1, 1, 8), _message(consumer))  # a full batch does not wait
    await _settle()
    assert [what for what, _ in consumer.log] == ["getmany", "commit", "commit"]


async def test_a_batch_being_worked_on_when_the_stop_begins_commits_before_it_returns() -> None:
    consumer, in_flight = FakeConsumer(), InFlight()
    release = asyncio.Event()
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def slow(records: Records, after: Delivery, wait: bool) -> Delivery:
        await release.wait()
        return Delivery([ack])

    lane = ConsumerLane(TOPIC, slow, in_flight, redelivery=NO_PAUSE)
    handling = asyncio.create_task(lane.handle(_batch(0, 10, 5), _message(consumer)))
    await _settle()
    closing = asyncio.create_task(in_flight.close())
    await _settle()
    release.set()
    await _settle()

    assert not handling.done()  # waits for its delivery and commit, the stop having begun
    ack.set_result(None)
    await handling
    assert consumer.log == [("commit", {0: 15})]
    await closing


class CoordinatorGone(FakeConsumer):
    """Its first commit does not answer, and goes on waiting when cancelled, as
    aiokafka's did after a broker restart (until `released`)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not self.log:
            self.log.append(("commit hangs", {tp.partition: o for tp, o in offsets.items()}))
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                await self.released.wait()  # the cancellation swallowed
            return
        await super().commit(offsets)


async def test_a_commit_that_never_answers_is_given_up_and_the_next_ones_go_on() -> None:
    work, consumer = FakeWork(), CoordinatorGone()
    in_flight = InFlight()
    lane = ConsumerLane(TOPIC, work, in_flight, redelivery=NO_PAUSE, commit_timeout_s=0.05)

    await lane.handle(_batch(0, 10, 5), _message(consumer))
    work.acks[0].set_result(None)
    await lane.handle(_batch(0, 15, 5), _message(consumer))  # sent once the first was delivered
    work.acks[1].set_result(None)
    async with asyncio.timeout(5):  # a stop finishes, not waiting for the lost commit
        await in_flight.close()

    assert consumer.log == [("commit hangs", {0: 15}), ("commit", {0: 20})]
    consumer.released.set()


class FetchFails(FakeConsumer):
    """aiokafka raises a fetch error once, having consumed nothing (a record too large)."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.log.append(("getmany fails", {}))
        raise RecordTooLargeError("a record larger than the fetch size")


async def test_a_batch_whose_top_up_fails_is_worked_on_as_delivered() -> None:
    """Were the error to escape, the batch would be neither applied nor sought back, and
    the next batch's commit would pass over it."""
    consumer = FetchFails()
    seen: list[int] = []

    async def work(records: Records, after: Delivery, wait: bool) -> Delivery:
        seen.extend(r.offset for r in records)
        return DELIVERED

    lane = ConsumerLane(TOPIC, work, InFlight(), max_records=8, linger_ms=2, redelivery=NO_PAUSE)
    await lane.handle(_batch(0, 10, 3), _message(consumer))
    await _settle()

    assert seen == [10, 11, 12]
    assert consumer.log == [("getmany fails", {}), ("commit", {0: 13})]
