"""`ensure_topics` against a fake admin client: how it reads the broker's per-topic
answers to CreateTopics (aiokafka returns them, it does not raise them) and how it
compares the partition counts of topics that already exist with the settings.
tests/integration/test_topic_setup.py runs the same against the real broker."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import InvalidReplicationFactorError, UnknownError

from shopflow.contracts.topics import (
    COMMAND_ROUTES,
    DEAD_LETTERS,
    EVENT_TOPICS,
    POINTS_CHARGE,
    POINTS_EVENTS,
    Topics,
)
from shopflow.kafka_admin import TopicMismatch, ensure_topics, planned_topics
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings

PREFIX = "unit."
CHARGES = Topics(PREFIX).name(POINTS_CHARGE)
POINTS_RESULTS = Topics(PREFIX).name(POINTS_EVENTS)

ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
LEADER_NOT_AVAILABLE = 5


@dataclass
class CreateTopicsAnswer:
    """The shape of aiokafka's CreateTopicsResponse: one entry per topic."""

    topic_errors: list[tuple[Any, ...]]


@dataclass
class FakeBroker:
    """What the fake admin client sees and answers."""

    partitions: dict[str, int] = field(default_factory=dict)  # topics that exist
    # topic -> (error code, message) the broker answers to its creation (0 by default)
    creation_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    answer_v0: bool = False  # CreateTopics v0 entries: (topic, error_code), no message
    # topic -> partitions: created by another process right after ensure_topics lists
    appear_after_listing: dict[str, int] = field(default_factory=dict)
    unlisted_describes: int = 0  # describe calls that still find no partitions
    created: list[str] = field(default_factory=list)
    describe_calls: int = 0


class FakeAdmin:
    broker = FakeBroker()

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        listed = list(self.broker.partitions)
        self.broker.partitions.update(self.broker.appear_after_listing)
        return listed

    async def create_topics(self, new_topics: Sequence[NewTopic]) -> CreateTopicsAnswer:
        entries: list[tuple[Any, ...]] = []
        for topic in new_topics:
            code, message = self.broker.creation_errors.get(topic.name, (0, ""))
            if topic.name in self.broker.partitions:
                code, message = ALREADY_EXISTS, f"Topic '{topic.name}' already exists."
            if code == 0:
                self.broker.partitions[topic.name] = topic.num_partitions
                self.broker.created.append(topic.name)
            entries.append(
                (topic.name, code) if self.broker.answer_v0 else (topic.name, code, message)
            )
        return CreateTopicsAnswer(entries)

    async def describe_topics(self, names: Sequence[str]) -> list[dict[str, Any]]:
        self.broker.describe_calls += 1
        unlisted = self.broker.unlisted_describes > 0
        self.broker.unlisted_describes -= 1
        return [
            {
                "topic": name,
                "error_code": LEADER_NOT_AVAILABLE if unlisted else 0,
                "is_internal": False,
                "partitions": [] if unlisted else list(range(self.broker.partitions[name])),
            }
            for name in names
        ]


class FakeConnection(KafkaConnection):
    """A connection whose admin client is the fake."""

    def admin(self, **options: Any) -> Any:
        return FakeAdmin()


FAKE_KAFKA = FakeConnection(("fake:9092",), security_protocol="PLAINTEXT")


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(FakeAdmin, "broker", fake)
    return fake


def settings(**overrides: Any) -> Settings:
    return Settings(
        topic_prefix=PREFIX,
        command_partitions=6,
        event_partitions=6,
        dead_letter_partitions=2,
        **overrides,
    )


def all_planned() -> dict[str, int]:
    """Every topic settings() plans, with its count (written out here, not read from
    planned_topics, so the test does not lean on what it tests)."""
    topics = Topics(PREFIX)
    planned = {topics.name(route.topic): 6 for route in COMMAND_ROUTES}
    planned.update({topics.name(topic): 6 for topic in EVENT_TOPICS})
    planned[topics.name(DEAD_LETTERS)] = 2
    return planned


async def test_a_creation_error_other_than_already_exists_raises_naming_the_topic(
    broker: FakeBroker,
) -> None:
    message = "Replication factor: 3 larger than available brokers: 1."
    broker.creation_errors[CHARGES] = (INVALID_REPLICATION_FACTOR, message)

    with pytest.raises(InvalidReplicationFactorError) as raised:
        await ensure_topics(settings(), FAKE_KAFKA)

    assert CHARGES in str(raised.value)
    assert message in str(raised.value)


async def test_an_error_code_aiokafka_does_not_know_still_raises_with_its_code(
    broker: FakeBroker,
) -> None:
    broker.creation_errors[CHARGES] = (9999, "")

    with pytest.raises(UnknownError, match=f"{CHARGES} \\(broker error code 9999\\)"):
        await ensure_topics(settings(), FAKE_KAFKA)


async def test_already_exists_is_not_an_error_and_the_topic_is_not_reported_created(
    broker: FakeBroker,
) -> None:
    broker.appear_after_listing[CHARGES] = 6  # another process, starting at the same time

    created = await ensure_topics(settings(), FAKE_KAFKA)

    assert sorted(created) == sorted(t for t in all_planned() if t != CHARGES)


async def test_a_topic_created_elsewhere_in_between_has_its_partitions_checked(
    broker: FakeBroker,
) -> None:
    broker.appear_after_listing[CHARGES] = 2

    with pytest.raises(TopicMismatch, match=f"topic {CHARGES} has 2 partitions"):
        await ensure_topics(settings(), FAKE_KAFKA)


async def test_a_v0_answer_without_error_messages_is_read(broker: FakeBroker) -> None:
    broker.answer_v0 = True

    created = await ensure_topics(settings(), FAKE_KAFKA)

    assert sorted(created) == sorted(all_planned())


async def test_an_existing_topic_with_fewer_partitions_is_refused_in_one_sentence(
    broker: FakeBroker,
) -> None:
    broker.partitions[CHARGES] = 3

    with pytest.raises(TopicMismatch) as raised:
        await ensure_topics(settings(), FAKE_KAFKA)

    assert str(raised.value) == (
        f"topic {CHARGES} has 3 partitions, fewer than the 6 SHOPFLOW_COMMAND_PARTITIONS "
        "asks for; add partitions or change the setting."
    )
    assert "\n" not in str(raised.value)
    # The missing topics are still created: a second start after the fix has less to do.
    assert sorted(broker.created) == sorted(t for t in all_planned() if t != CHARGES)


async def test_every_short_topic_is_named_with_the_setting_it_falls_short_of(
    broker: FakeBroker,
) -> None:
    broker.partitions[CHARGES] = 1
    broker.partitions[POINTS_RESULTS] = 2

    with pytest.raises(TopicMismatch) as raised:
        await ensure_topics(settings(), FAKE_KAFKA)

    text = str(raised.value)
    assert f"topic {CHARGES} has 1 partition, fewer than the 6 SHOPFLOW_COMMAND_PARTITIONS" in text
    assert f"topic {POINTS_RESULTS} has 2 partitions, fewer than the 6 SHOPFLOW_EVENT_PART" in text
    assert [(s.topic, s.partitions, s.planned) for s in raised.value.short] == [
        (CHARGES, 1, 6),
        (POINTS_RESULTS, 2, 6),
    ]


async def test_more_partitions_than_configured_is_fine_and_logged_at_info(
    broker: FakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker.partitions.update(all_planned())
    broker.partitions[CHARGES] = 24

    with caplog.at_level(logging.INFO, logger="shopflow.kafka_admin"):
        created = await ensure_topics(settings(), FAKE_KAFKA)

    assert created == []
    assert any(
        r.levelno == logging.INFO and CHARGES in r.getMessage() and "24" in r.getMessage()
        for r in caplog.records
    )


async def test_partitions_not_yet_in_the_metadata_are_asked_for_again(
    broker: FakeBroker,
) -> None:
    broker.partitions.update(all_planned())
    broker.partitions[CHARGES] = 3
    broker.unlisted_describes = 2  # a topic just created elsewhere: not listed at first

    with pytest.raises(TopicMismatch):
        await ensure_topics(settings(), FAKE_KAFKA)

    assert broker.describe_calls == 3


async def test_topics_it_created_itself_need_no_metadata_round_trip(broker: FakeBroker) -> None:
    created = await ensure_topics(settings(), FAKE_KAFKA)

    assert sorted(created) == sorted(all_planned())
    assert broker.describe_calls == 0


@pytest.mark.parametrize(("replicas", "insync"), [(1, None), (2, "1"), (3, "2"), (5, "2")])
def test_topics_with_replicas_ask_for_acknowledgement_by_two_of_them(
    replicas: int, insync: str | None
) -> None:
    plan = planned_topics(settings(replication_factor=replicas))

    assert plan.keys() == all_planned().keys()
    for planned in plan.values():
        assert planned.configs.get("min.insync.replicas") == insync
