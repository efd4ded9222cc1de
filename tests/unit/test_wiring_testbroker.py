"""The service's consumer wiring (`shopflow.runtime.register_command_consumers`, the
broker of `build_broker`) under FastStream's TestKafkaBroker, with no server: manual
acknowledgement, the seek back of a batch whose results were not delivered, binary
headers, dead letters, every command topic.

The database is in memory (tests/support/fakes.py), and so are Kafka's two ends
(tests/support/memory_kafka.py, which says why TestKafkaBroker alone has neither a consumer
that commits or seeks nor a way to see the service's sink).
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shopflow.consumers.offset_lane import InFlight
from shopflow.contracts.dead_letters import DeadLetter, DeadLetterReason
from shopflow.contracts.events import (
    CartItemAdded,
    OrderPlaced,
    PointsCharged,
    ProductUpserted,
    ResultEvent,
    UserRegistered,
    parse_event,
)
from shopflow.contracts.topics import (
    CART_ADD_ITEM,
    CATALOG_UPSERT_PRODUCT,
    COMMAND_ROUTES,
    DEAD_LETTERS,
    ORDERS_PLACE,
    POINTS_CHARGE,
    USERS_REGISTER,
    Topics,
)
from shopflow.domain.clock import utc_now
from shopflow.producers.dead_letters import DeadLetterLimits
from shopflow.runtime import build_broker, register_command_consumers
from shopflow.settings import Settings
from tests.support.fakes import UNIT_KAFKA, FakeDatabase, FakeState
from tests.support.memory_kafka import (
    MemoryKafka,
    MemorySink,
    handing_over,
    poll,
    subscriber_of,
    until,
)

USER = 7


@dataclass
class Wired:
    broker: KafkaBroker
    kafka: MemoryKafka
    sink: MemorySink
    database: FakeDatabase
    settings: Settings

    def topic(self, contract_topic: str) -> str:
        return Topics(self.settings.topic_prefix).name(contract_topic)

    def partition(self, contract_topic: str) -> TopicPartition:
        return TopicPartition(self.topic(contract_topic), 0)

    def send(self, contract_topic: str, key: bytes, value: dict[str, object] | bytes) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.kafka.append(self.topic(contract_topic), key, raw)

    async def poll(self, contract_topic: str) -> int:
        return await poll(
            self.broker, self.kafka, self.topic(contract_topic), self.settings.batch_max_records
        )

    def results(self) -> list[ResultEvent]:
        return [parse_event(m.value) for m in self.sink.delivered if m.topic != DEAD_LETTERS]

    def dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter.model_validate_json(m.value)
            for m in self.sink.delivered
            if m.topic == DEAD_LETTERS
        ]


@asynccontextmanager
async def wiring(*, hand_over: bool) -> AsyncIterator[Wired]:
    """The service's command consumers under TestKafkaBroker; with `hand_over`, each
    handler gets `MemoryKafka` as its consumer, else FastStream's stand-in."""
    settings = Settings(
        topic_prefix="wired.",
        consumer_group="wiring",
        consumers_per_topic=1,
        batch_max_records=500,
        batch_linger_ms=2,  # the lane tops batches up from the consumer (getmany)
    )
    broker = build_broker(settings, UNIT_KAFKA)
    kafka, sink, in_flight = MemoryKafka(), MemorySink(), InFlight()
    database = FakeDatabase(FakeState(users={USER: "Ann"}, balances={USER: 0}))
    register_command_consumers(
        broker,
        settings,
        database=database,
        sink=sink,
        limits=DeadLetterLimits(),
        clock=utc_now,
        in_flight=in_flight,
    )
    if hand_over:
        broker.add_middleware(handing_over(kafka))
    async with TestKafkaBroker(broker) as started:
        yield Wired(started, kafka, sink, database, settings)
        # What is still being delivered finishes, as at a stop (what a failed test held
        # back is let go first, or the stop would wait for it forever).
        sink.release()
        async with asyncio.timeout(5):
            await in_flight.close()


@pytest.fixture
async def wired() -> AsyncIterator[Wired]:
    async with wiring(hand_over=True) as started:
        yield started


def _charge(command_id: str, amount: int, user_id: int = USER) -> dict[str, object]:
    return {"command_id": command_id, "user_id": user_id, "amount": amount}


async def test_every_command_topic_is_consumed_in_its_group_and_answered(wired: Wired) -> None:
    groups = {
        wired.topic(r.topic): subscriber_of(wired.broker, wired.topic(r.topic)).group_id
        for r in COMMAND_ROUTES
    }
    assert groups == {
        wired.topic(r.topic): f"wiring.{wired.topic(r.topic)}" for r in COMMAND_ROUTES
    }
    assert len(wired.broker.subscribers) == len(COMMAND_ROUTES)
    commands = [
        (USERS_REGISTER, b"8", {"command_id": "u-8", "user_id": 8, "name": "Bo"}),
        (
            CATALOG_UPSERT_PRODUCT,
            b"3",
            {"command_id": "p-3", "product_id": 3, "name": "Mug", "price": 40, "stock_added": 5},
        ),
        (POINTS_CHARGE, b"8", _charge("c-8", 1_000, user_id=8)),
        (CART_ADD_ITEM, b"8", {"command_id": "a-8", "user_id": 8, "product_id": 3, "quantity": 2}),
        (ORDERS_PLACE, b"8", {"command_id": "o-8", "user_id": 8, "from_cart": True}),
    ]
    for topic, key, command in commands:  # each waits for the one before, as a sender would
        wired.send(topic, key, command)
        assert await wired.poll(topic) == 1

    results = wired.results()
    assert [type(e) for e in results] == [
        UserRegistered,
        ProductUpserted,
        PointsCharged,
        CartItemAdded,
        OrderPlaced,
    ]
    order = results[-1]
    assert isinstance(order, OrderPlaced)
    assert (order.total, order.balance) == (80, 920)
    state = wired.database.state
    assert (state.balances[8], state.products[3].stock, state.cart) == (920, 3, {})


async def test_a_message_the_test_broker_publishes_is_applied_and_its_offset_committed(
    wired: Wired,
) -> None:
    """TestKafkaBroker's own path: `publish` hands the message to the subscriber (as
    offset 0 of partition 0; it has no log)."""
    await wired.broker.publish(
        json.dumps(_charge("c-1", 250)).encode(), wired.topic(POINTS_CHARGE), key=b"7"
    )

    await until(lambda: bool(wired.kafka.commits))
    [event] = wired.results()
    assert isinstance(event, PointsCharged)
    assert (event.command_id, event.amount, event.balance) == ("c-1", 250, 250)
    assert wired.database.state.balances[USER] == 250
    assert wired.kafka.commits == [{wired.partition(POINTS_CHARGE): 1}]


async def test_with_the_test_broker_alone_commands_are_applied_but_nothing_is_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What works with TestKafkaBroker as it comes, whose stand-in consumer has no
    `getmany` and a `commit()` that takes no offsets: the batch is worked on
    as delivered (not topped up) and answered, and its offset commit fails, logged, as
    one lost to a rebalance would (the next batch's covers it)."""
    async with wiring(hand_over=False) as wired:
        await wired.broker.publish(
            json.dumps(_charge("c-1", 250)).encode(), wired.topic(POINTS_CHARGE), key=b"7"
        )
        await until(lambda: "offset commit failed" in caplog.text)

        [event] = wired.results()
        assert isinstance(event, PointsCharged)
        assert (event.command_id, event.balance) == ("c-1", 250)
        assert wired.database.state.balances[USER] == 250
        assert "topping up a batch from wired.shop.points.charge failed" in caplog.text


async def test_offsets_are_committed_only_once_the_results_are_delivered(wired: Wired) -> None:
    wired.sink.hold = True
    for i in range(3):
        wired.send(POINTS_CHARGE, b"7", _charge(f"c-{i}", 10))

    assert await wired.poll(POINTS_CHARGE) == 1  # one batch
    await until(lambda: wired.database.transactions == 1)
    assert wired.database.state.balances[USER] == 30  # applied and committed in the database
    assert wired.kafka.commits == []  # but not acknowledged: FastStream does not ack either

    wired.sink.release()

    await until(lambda: bool(wired.kafka.commits))
    assert wired.kafka.commits == [{wired.partition(POINTS_CHARGE): 3}]  # its own offsets
    assert [e.command_id for e in wired.results()] == ["c-0", "c-1", "c-2"]


async def test_a_batch_whose_results_were_not_delivered_is_sought_back_and_replayed(
    wired: Wired,
) -> None:
    wired.sink.failures = [KafkaTimeoutError()]  # the broker does not answer, once
    wired.send(POINTS_CHARGE, b"7", _charge("c-1", 100))
    wired.send(POINTS_CHARGE, b"7", _charge("c-2", 5))
    tp = wired.partition(POINTS_CHARGE)

    await wired.poll(POINTS_CHARGE)
    await until(lambda: wired.kafka.position(tp) == 0)  # sought back to the batch's start

    assert wired.kafka.commits == []
    assert wired.results() == []
    # The redelivery: replayed from the ledger, not applied again.
    assert await wired.poll(POINTS_CHARGE) == 1
    await until(lambda: bool(wired.kafka.commits))
    assert wired.kafka.commits == [{tp: 2}]
    assert wired.database.state.balances[USER] == 105
    events = wired.results()
    assert [(e.command_id, e.event_id) for e in events] == [
        (c, wired.database.state.ledger[c].event_id) for c in ("c-1", "c-2")
    ]


async def test_binary_headers_do_not_stop_a_command(wired: Wired) -> None:
    """FastStream's parser decodes every header as UTF-8 and would fail the batch on
    the first one; the subscriber's parser drops such headers first."""
    wired.kafka.append(
        wired.topic(POINTS_CHARGE),
        b"7",
        json.dumps(_charge("c-1", 42)).encode(),
        headers=[("traceparent", b"\xff\xfe\x00\x9f"), ("content-type", b"application/json")],
    )

    await wired.poll(POINTS_CHARGE)

    await until(lambda: bool(wired.kafka.commits))
    [event] = wired.results()
    assert isinstance(event, PointsCharged)
    assert event.balance == 42
    assert wired.kafka.commits == [{wired.partition(POINTS_CHARGE): 1}]


async def test_bad_records_become_dead_letters_and_the_records_behind_them_are_applied(
    wired: Wired,
) -> None:
    wired.send(POINTS_CHARGE, b"7", b"{not json")
    wired.send(POINTS_CHARGE, b"8", _charge("c-1", 10))  # keyed by another user
    wired.send(POINTS_CHARGE, b"7", _charge("c-2", 10) | {"bonus": 1})  # an unknown field
    wired.send(POINTS_CHARGE, b"7", _charge("c-3", 10))

    await wired.poll(POINTS_CHARGE)

    await until(lambda: bool(wired.kafka.commits))
    letters = wired.dead_letters()
    assert [(d.offset, d.reason) for d in letters] == [
        (0, DeadLetterReason.INVALID_JSON),
        (1, DeadLetterReason.KEY_MISMATCH),
        (2, DeadLetterReason.INVALID_MESSAGE),
    ]
    assert {d.source_topic for d in letters} == {wired.topic(POINTS_CHARGE)}
    assert base64.b64decode(letters[0].payload_base64) == b"{not json"
    assert {d.dead_letter_id for d in letters} == set(wired.database.state.dead_letters)
    assert [e.command_id for e in wired.results()] == ["c-3"]
    assert wired.database.state.balances[USER] == 10
    assert wired.kafka.commits == [{wired.partition(POINTS_CHARGE): 4}]
