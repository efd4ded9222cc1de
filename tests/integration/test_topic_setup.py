"""`ensure_topics` (which `shopflow topics create` runs, as the Kafka admin) and
`check_topics` (which `shopflow serve`, `worker` and `migrate` run first) against the real
broker: topics the service cannot use are refused, and what the broker refuses is raised.

Each test has a topic prefix of its own and deletes its topics after. The CLI runs in a
worker thread (tests.support.cli: its commands call asyncio.run)."""

from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import InvalidReplicationFactorError

from shopflow.contracts.topics import (
    COMMAND_ROUTES,
    DEAD_LETTERS,
    EVENT_TOPICS,
    POINTS_CHARGE,
    Topics,
)
from shopflow.kafka_access import ADMIN, kafka_connection
from shopflow.kafka_admin import TopicMismatch, ensure_topics
from shopflow.kafka_admin import planned_topics as planned
from shopflow.ops.access import provision
from shopflow.settings import Settings
from tests.support.cli import shopflow_with
from tests.support.scratch import delete_scratch_topics
from tests.support.service import isolated

PARTITIONS = 3


@pytest.fixture
async def settings(test_settings: Settings) -> AsyncIterator[Settings]:
    """Settings with a topic prefix of the test's own; its topics are deleted after."""
    own = isolated(
        test_settings,
        "topics",
        command_partitions=PARTITIONS,
        event_partitions=PARTITIONS,
        dead_letter_partitions=1,
    )
    yield own
    await delete_scratch_topics(own)


async def create_topic(settings: Settings, name: str, partitions: int) -> None:
    admin = kafka_connection(settings, ADMIN).admin()
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        assert [entry[1] for entry in response.topic_errors] == [0]
    finally:
        await admin.close()


async def broker_count(settings: Settings) -> int:
    admin = kafka_connection(settings, ADMIN).admin()
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


def all_topics(settings: Settings) -> set[str]:
    topics = Topics(settings.topic_prefix)
    names = {topics.name(route.topic) for route in COMMAND_ROUTES}
    return names | {topics.name(t) for t in (*EVENT_TOPICS, DEAD_LETTERS)}


def short_sentence(topic: str) -> str:
    return (
        f"topic {topic} has 1 partition, fewer than the {PARTITIONS} "
        "SHOPFLOW_COMMAND_PARTITIONS asks for; add partitions or change the setting."
    )


async def test_a_topic_with_fewer_partitions_than_configured_is_refused(
    settings: Settings,
) -> None:
    charges = Topics(settings.topic_prefix).name(POINTS_CHARGE)
    await create_topic(settings, charges, 1)

    with pytest.raises(TopicMismatch) as raised:
        await ensure_topics(settings, kafka_connection(settings, ADMIN))

    assert str(raised.value) == short_sentence(charges)


async def test_ensuring_twice_creates_once_and_accepts_what_it_created(
    settings: Settings,
) -> None:
    first = await ensure_topics(settings, kafka_connection(settings, ADMIN))
    second = await ensure_topics(settings, kafka_connection(settings, ADMIN))

    assert set(first) == all_topics(settings)
    assert second == []


async def test_a_topic_with_more_partitions_than_configured_is_used(settings: Settings) -> None:
    charges = Topics(settings.topic_prefix).name(POINTS_CHARGE)
    await create_topic(settings, charges, PARTITIONS + 2)

    created = await ensure_topics(settings, kafka_connection(settings, ADMIN))

    assert set(created) == all_topics(settings) - {charges}


async def test_a_creation_the_broker_refuses_raises_naming_the_topic(
    settings: Settings,
) -> None:
    # More replicas than brokers: the broker answers INVALID_REPLICATION_FACTOR per topic.
    refused = settings.model_copy(update={"replication_factor": await broker_count(settings) + 1})

    with pytest.raises(InvalidReplicationFactorError) as raised:
        await ensure_topics(refused, kafka_connection(refused, ADMIN))

    assert any(topic in str(raised.value) for topic in all_topics(settings))


@pytest.mark.parametrize("command", ["migrate", "worker", "serve"])
async def test_the_cli_refuses_to_start_in_one_line(settings: Settings, command: str) -> None:
    charges = Topics(settings.topic_prefix).name(POINTS_CHARGE)
    await create_topic(settings, charges, 1)
    admin = kafka_connection(settings, ADMIN)
    with pytest.raises(TopicMismatch):  # the others are made (and the short one refused)
        await ensure_topics(settings, admin)
    await provision(settings, admin, local_users=False)

    result = await shopflow_with(settings, command)

    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    assert result.stderr == f"shopflow refuses to start: {short_sentence(charges)}\n"
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["migrate", "worker", "serve"])
async def test_a_service_on_topics_nobody_provisioned_refuses_to_start_in_one_line(
    settings: Settings, command: str
) -> None:
    result = await shopflow_with(settings, command)

    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    missing = ", ".join(sorted(all_topics(settings), key=list(planned(settings)).index))
    assert result.stderr == (
        f"shopflow refuses to start: the topics {missing} are not on the brokers (or "
        "shopflow may not describe them): create them as an admin principal with "
        "`shopflow topics create`\n"
    )


async def test_a_session_timeout_the_broker_refuses_stops_the_worker_in_one_line(
    settings: Settings,
) -> None:
    # The broker allows 1,000 to 1,800,000 ms (scripts/infra.sh; Kafka's default maximum).
    refused = settings.model_copy(update={"session_timeout_ms": 1_800_001})

    result = await shopflow_with(refused, "worker")

    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    assert result.stderr == (
        "shopflow refuses to start: SHOPFLOW_SESSION_TIMEOUT_MS is 1800001 ms, outside the "
        "1000-1800000 ms that the brokers' group.min.session.timeout.ms and "
        "group.max.session.timeout.ms allow; change the setting or the brokers'.\n"
    )
