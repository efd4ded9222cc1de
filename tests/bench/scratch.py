"""What every benchmark sets up alike: settings of a run of its own (a topic prefix and
consumer groups nobody else uses, on the servers of `make up`), the environment that
points a `shopflow` subprocess at them, and the removal of the run's topics."""

import os
import secrets

from aiokafka.admin import AIOKafkaAdminClient

from shopflow.settings import Settings


def scratch_settings(label: str = "bench", **overrides: object) -> Settings:
    """The default settings, behind a fresh topic prefix and consumer group."""
    run = f"{label}-{secrets.token_hex(3)}"
    return Settings().model_copy(
        update={"topic_prefix": f"{run}.", "consumer_group": run, **overrides}
    )


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment, with a `shopflow` subprocess pointed at `settings`'
    servers, topics and groups (and `extra` SHOPFLOW_* variables, which take precedence)."""
    return {
        **os.environ,
        "SHOPFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SHOPFLOW_DATABASE_URL": settings.database_url,
        "SHOPFLOW_MIGRATION_DATABASE_URL": settings.migration_database_url,
        "SHOPFLOW_REDIS_URL": settings.redis_url,
        "SHOPFLOW_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "SHOPFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "SHOPFLOW_CONSUMER_GROUP": settings.consumer_group,
        "SHOPFLOW_COMMAND_PARTITIONS": str(settings.command_partitions),
        "SHOPFLOW_EVENT_PARTITIONS": str(settings.event_partitions),
        "SHOPFLOW_DEAD_LETTER_PARTITIONS": str(settings.dead_letter_partitions),
        # A free port for each worker's metrics and health: runs start several workers
        # on this machine, beside whatever else listens here.
        "SHOPFLOW_WORKER_HTTP_PORT": "0",
        **extra,
    }


async def delete_scratch_topics(settings: Settings) -> None:
    """Delete every topic of the run (those behind its prefix)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
