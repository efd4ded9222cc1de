"""Creating the service's topics with explicit partition counts (the broker does not
auto-create them: a topic created by accident with one partition caps parallelism), and
reading back the limit that sizes dead letters."""

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from contracts.topics import COMMAND_ROUTES, DEAD_LETTERS, EVENT_TOPICS, Topics
from shopflow.settings import Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = "max.message.bytes"


@dataclass(frozen=True)
class PlannedTopic:
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def planned_topics(settings: Settings) -> dict[str, PlannedTopic]:
    """Every deployed topic name with its partition count and explicit configs."""
    topics = Topics(settings.topic_prefix)
    plan = {topics.name(r.topic): PlannedTopic(settings.command_partitions) for r in COMMAND_ROUTES}
    plan.update({topics.name(t): PlannedTopic(settings.event_partitions) for t in EVENT_TOPICS})
    # Set on purpose rather than inherited from the broker: dead letters are sized to it.
    plan[topics.name(DEAD_LETTERS)] = PlannedTopic(
        settings.dead_letter_partitions,
        {MAX_MESSAGE_BYTES: str(settings.dead_letter_topic_max_message_bytes)},
    )
    return plan


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=plan.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=plan.configs,
            )
            for name, plan in planned_topics(settings).items()
            if name not in existing
        ]
        if not missing:
            return []
        # aiokafka reports creation errors per topic in the response, not by raising.
        response = await admin.create_topics(missing)
        created = []
        for topic, code, message in response.topic_errors:
            if code == 0:
                created.append(topic)
                continue
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                continue  # another process created it in between: what we wanted anyway
            raise error(f"creating topic {topic}: {message}")
        return created
    finally:
        await admin.close()


async def topic_max_message_bytes(settings: Settings, topic: str) -> int:
    """The topic's max.message.bytes as the broker applies it (its own or the default)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {MAX_MESSAGE_BYTES: None})]
        )
    finally:
        await admin.close()
    for response in responses:
        for resource in response.resources:
            error_code, error_message, _, name, entries = resource[:5]
            if error_code:
                raise for_code(error_code)(f"describing topic {name}: {error_message}")
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES:
                    return int(entry[1])
    raise LookupError(f"the broker did not report {MAX_MESSAGE_BYTES} of {topic}")
