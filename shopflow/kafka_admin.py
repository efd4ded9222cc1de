"""Creating the service's topics with explicit partition counts (`ensure_topics`, run by
`shopflow topics create` as an admin principal; the broker does not auto-create them: a
topic created by accident with one partition caps parallelism), checking at start that
they are there with at least the configured partitions (`check_topics`, as the service),
the brokers' session timeout bounds, and reading back the limit that sizes dead
letters."""

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import ClusterAuthorizationFailedError, TopicAlreadyExistsError, for_code

from shopflow.contracts.topics import COMMAND_ROUTES, DEAD_LETTERS, EVENT_TOPICS, Topics
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings, env_name

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = "max.message.bytes"
MIN_INSYNC_REPLICAS = "min.insync.replicas"
# How long to wait for the cluster metadata to list a topic another process has just
# created (it answers UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE until then).
METADATA_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class PlannedTopic:
    partitions: int
    setting: str  # the variable the partition count comes from (SHOPFLOW_...), for refusals
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShortTopic:
    """A topic with fewer partitions than the settings ask for."""

    topic: str
    partitions: int
    planned: int
    setting: str

    def sentence(self) -> str:
        return (
            f"topic {self.topic} has {_partitions(self.partitions)}, fewer than the "
            f"{self.planned} {self.setting} asks for; add partitions or change the setting."
        )


class StartRefused(RuntimeError):
    """A set-up the service refuses to run on; `str()` is the one sentence to show the
    operator."""


class TopicMismatch(StartRefused):
    """Existing topics the service refuses to run on: fewer partitions than configured
    (the configured count is what the deployment is sized for; running on fewer would
    silently cap its parallelism). `str()` is the sentence to show the operator."""

    def __init__(self, short: list[ShortTopic]) -> None:
        self.short = short
        super().__init__(" ".join(s.sentence() for s in short))


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def min_insync_replicas(replication_factor: int) -> int | None:
    """What shopflow creates its topics with: with 3 or more replicas, a write (the
    producers use acks=all) is acknowledged once 2 have it, so one broker may be down
    and an acknowledged record still survives the loss of another; with 2, by 1 (else
    one broker down would stop every write); with 1, the broker's default."""
    return None if replication_factor < 2 else min(2, replication_factor - 1)


def planned_topics(settings: Settings) -> dict[str, PlannedTopic]:
    """Every deployed topic name with its partition count and explicit configs."""
    topics = Topics(settings.topic_prefix)
    insync = min_insync_replicas(settings.replication_factor)
    durability = {} if insync is None else {MIN_INSYNC_REPLICAS: str(insync)}
    commands = PlannedTopic(settings.command_partitions, env_name("command_partitions"), durability)
    events = PlannedTopic(settings.event_partitions, env_name("event_partitions"), durability)
    plan = {topics.name(r.topic): commands for r in COMMAND_ROUTES}
    plan.update({topics.name(t): events for t in EVENT_TOPICS})
    # Set on purpose rather than inherited from the broker: dead letters are sized to it.
    plan[topics.name(DEAD_LETTERS)] = PlannedTopic(
        settings.dead_letter_partitions,
        env_name("dead_letter_partitions"),
        {MAX_MESSAGE_BYTES: str(settings.dead_letter_topic_max_message_bytes), **durability},
    )
    return plan


async def ensure_topics(settings: Settings, kafka: KafkaConnection) -> list[str]:
    """Create the topics that are missing and check the partitions of those that were
    not; returns the names created. Raises the broker's error (aiokafka.errors) if one
    cannot be created, and TopicMismatch if an existing one has fewer partitions than
    the settings ask for. `kafka` must be a principal that may create topics (the
    provisioning step's, `shopflow topics create`; the service's may not)."""
    plan = planned_topics(settings)
    admin = kafka.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=planned.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=planned.configs,
            )
            for name, planned in plan.items()
            if name not in existing
        ]
        created = _created(await admin.create_topics(missing)) if missing else []
        # A topic created by this call has the planned count; every other one (existing
        # before, or created by another process in between) is checked.
        to_check = [name for name in plan if name not in created]
        if to_check:
            counts = await _partition_counts(admin, to_check)
            _check_partitions({name: plan[name] for name in to_check}, counts)
        return created
    finally:
        await admin.close()


class TopicsNotProvisioned(StartRefused):
    """Topics the service needs that are not on the brokers: provisioning makes them."""


async def check_topics(settings: Settings, kafka: KafkaConnection) -> None:
    """Refuse to start unless every planned topic is there with at least its planned
    partitions. The service does not create topics: its principal may not (CONTRACT.md,
    Access); `shopflow topics create` does, as an admin principal."""
    plan = planned_topics(settings)
    admin = kafka.admin()
    await admin.start()
    try:
        counts = _listed(await admin.describe_topics(list(plan)))
    finally:
        await admin.close()
    missing = [name for name in plan if name not in counts]
    if missing:
        raise TopicsNotProvisioned(
            f"the topics {', '.join(missing)} are not on the brokers (or {kafka.principal} "
            "may not describe them): create them as an admin principal with `shopflow "
            "topics create`"
        )
    _check_partitions(plan, counts)


def _created(response: Any) -> list[str]:
    """The topics a CreateTopicsResponse reports created. aiokafka reports creation
    errors per topic in the response, not by raising: "already exists" means another
    process created it in between (what we wanted; its partitions are checked after),
    any other error code is raised, naming the topic."""
    created = []
    # v0 entries are (topic, error_code); v1 and later add error_message.
    for topic, code, *message in response.topic_errors:
        if code == 0:
            created.append(topic)
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        # str() of the error leads with "[Error <code>] <ErrorName>: "; an unknown code
        # maps to UnknownError (errno -1), so the broker's own code is added then.
        unknown = f" (broker error code {code})" if error.errno != code else ""
        detail = f": {message[0]}" if message and message[0] else ""
        raise error(f"cannot create topic {topic}{unknown}{detail}")
    return created


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Each topic's partition count per the cluster metadata, asking again (for up to
    METADATA_TIMEOUT_S) while some topic is not listed with its partitions yet."""
    counts: dict[str, int] = {}
    try:
        async with asyncio.timeout(METADATA_TIMEOUT_S):
            while True:
                counts.update(_listed(await admin.describe_topics(names)))
                if len(counts) == len(names):
                    return counts
                await asyncio.sleep(0.2)
    except TimeoutError:
        unlisted = ", ".join(name for name in names if name not in counts)
        raise TimeoutError(
            f"the cluster metadata did not list the partitions of {unlisted} "
            f"within {METADATA_TIMEOUT_S:.0f}s"
        ) from None


def _listed(described: Iterable[dict[str, Any]]) -> dict[str, int]:
    return {
        t["topic"]: len(t["partitions"])
        for t in described
        if t["error_code"] == 0 and t["partitions"]
    }


def _check_partitions(plan: dict[str, PlannedTopic], counts: dict[str, int]) -> None:
    """Fewer partitions than planned is refused (all such topics in one message); more is
    fine: the deployment was sized for at least the planned count."""
    short = []
    for name, planned in plan.items():
        found = counts[name]
        if found < planned.partitions:
            short.append(ShortTopic(name, found, planned.partitions, planned.setting))
        elif found > planned.partitions:
            log.info(
                "topic %s has %d partitions, more than the %d %s asks for; using them all",
                name,
                found,
                planned.partitions,
                planned.setting,
            )
    if short:
        raise TopicMismatch(short)


GROUP_MIN_SESSION_TIMEOUT = "group.min.session.timeout.ms"
GROUP_MAX_SESSION_TIMEOUT = "group.max.session.timeout.ms"


class SessionTimeoutRefused(StartRefused):
    """The brokers would refuse the consumers' session timeout: they could not join their
    groups, and would keep trying without consuming anything."""


async def check_session_timeout(settings: Settings, kafka: KafkaConnection) -> None:
    """Refuse a `SHOPFLOW_SESSION_TIMEOUT_MS` outside what every broker allows (Kafka's
    default minimum is 6,000 ms; shopflow's default, 1,500, needs it lowered)."""
    admin = kafka.admin()
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        entries = await _configs(
            admin,
            [
                ConfigResource(
                    ConfigResourceType.BROKER,
                    str(b["node_id"]),
                    {GROUP_MIN_SESSION_TIMEOUT: None, GROUP_MAX_SESSION_TIMEOUT: None},
                )
                for b in brokers
            ],
        )
    except ClusterAuthorizationFailedError:
        raise StartRefused(
            f"principal {kafka.principal} may not describe the cluster's configs (the "
            f"brokers' {GROUP_MIN_SESSION_TIMEOUT} and {GROUP_MAX_SESSION_TIMEOUT}; "
            "CONTRACT.md, Access); an admin grants it with `shopflow topics create`"
        ) from None
    finally:
        await admin.close()
    lowest = max((int(v) for k, v in entries if k == GROUP_MIN_SESSION_TIMEOUT), default=0)
    highest = min((int(v) for k, v in entries if k == GROUP_MAX_SESSION_TIMEOUT), default=2**31)
    timeout = settings.session_timeout_ms
    if not lowest <= timeout <= highest:
        raise SessionTimeoutRefused(
            f"{env_name('session_timeout_ms')} is {timeout} ms, outside the {lowest}-"
            f"{highest} ms that the brokers' {GROUP_MIN_SESSION_TIMEOUT} and "
            f"{GROUP_MAX_SESSION_TIMEOUT} allow; change the setting or the brokers'."
        )


async def topic_max_message_bytes(kafka: KafkaConnection, topic: str) -> int:
    """The topic's max.message.bytes as the broker applies it (its own or the default)."""
    admin = kafka.admin()
    await admin.start()
    try:
        entries = await _configs(
            admin, [ConfigResource(ConfigResourceType.TOPIC, topic, {MAX_MESSAGE_BYTES: None})]
        )
    finally:
        await admin.close()
    for name, value in entries:
        if name == MAX_MESSAGE_BYTES:
            return int(value)
    raise LookupError(f"the broker did not report {MAX_MESSAGE_BYTES} of {topic}")


async def _configs(
    admin: AIOKafkaAdminClient, resources: list[ConfigResource]
) -> list[tuple[str, str]]:
    """(name, value) of every config entry the brokers report for `resources`; an error
    for any resource is raised, naming it."""
    entries: list[tuple[str, str]] = []
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            error_code, error_message, _, name, found = resource[:5]
            if error_code:
                raise for_code(error_code)(f"describing {name}: {error_message}")
            entries += [(entry[0], entry[1]) for entry in found]
    return entries
