"""Creating the service's topics with explicit partition counts (the broker does not
auto-create them: a topic created by accident with one partition caps parallelism)."""

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import COMMAND_ROUTES, DEAD_LETTERS, EVENT_TOPICS, Topics
from shopflow.settings import Settings

log = logging.getLogger(__name__)


def planned_topics(settings: Settings) -> dict[str, int]:
    """Every deployed topic name with its partition count."""
    topics = Topics(settings.topic_prefix)
    plan = {topics.name(r.topic): settings.command_partitions for r in COMMAND_ROUTES}
    plan.update({topics.name(t): settings.event_partitions for t in EVENT_TOPICS})
    plan[topics.name(DEAD_LETTERS)] = settings.dead_letter_partitions
    return plan


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=settings.replication_factor
            )
            for name, partitions in planned_topics(settings).items()
            if name not in existing
        ]
        if missing:
            # Another process may create them in between: what we wanted anyway.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
