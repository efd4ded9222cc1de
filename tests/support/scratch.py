"""What every benchmark (and the chaos runs, and the integration tests that start a
`shopflow` process) sets up alike: settings of a run of its own (a topic prefix, consumer
groups and a Redis namespace nobody else uses, on the servers of `make up`), the run's
topics with the contract's ACLs on them, the environment that points a `shopflow`
subprocess at them, and the removal of the topics and their ACLs.

Access control is on (CONTRACT.md, Access), and nothing here turns it off: the topics are
created and their ACLs provisioned as the Kafka admin (as `shopflow topics create` does),
the service's processes run as the service's principal with the passwords of their
servers' credentials file (SHOPFLOW_INFRA_DIR), and the benchmarks' own clients are the
principals of upstream writers, downstream readers or operators.
"""

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, for_code
from sqlalchemy import make_url

from shopflow.contracts.principals import ADMIN, SERVICE
from shopflow.contracts.topics import Topics
from shopflow.kafka_access import kafka_connection
from shopflow.kafka_admin import ensure_topics, planned_topics
from shopflow.local_credentials import LocalCredentials, Section
from shopflow.ops.access import missing_rights, provision, revoke_topic_acls
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings, env_name

BROKERS_TIMEOUT_S = 60.0  # for every broker of the cluster to be registered
VISIBLE_TIMEOUT_S = 30.0  # for every broker to let the service see the run's topics
POLL_S = 0.2

# The variables that would make a subprocess another principal than its settings say.
_IDENTITY = frozenset(
    env_name(s) for s in ("kafka_username", "kafka_password", "kafka_ssl_cafile", "infra_dir")
)


def scratch_settings(label: str = "bench", **overrides: object) -> Settings:
    """The default settings, behind a fresh topic prefix, consumer group (within the
    service's group prefix, `shopflow`) and Redis namespace (within the service's Redis
    keys, `shopflow:`)."""
    run = f"{label}-{secrets.token_hex(3)}"
    return Settings().model_copy(
        update={
            "topic_prefix": f"{run}.",
            "consumer_group": f"shopflow-{run}",
            "redis_key_prefix": f"shopflow:{run}:top",
            **overrides,
        }
    )


def admin_redis_url(settings: Settings) -> str:
    """`settings.redis_url` as Redis's user `admin`, its password from the servers'
    credentials file: for what a benchmark or fault does that the service's user may not
    (FLUSHALL, reading the view's sets with SCARD, keys outside `shopflow:`)."""
    password = settings.local_credentials().require(
        "redis", "admin", configure="a Redis URL with the admin's password"
    )
    url = make_url(settings.redis_url).set(username="admin", password=password)
    return url.render_as_string(hide_password=False)


def _without_local_password(url: str, credentials: LocalCredentials, section: Section) -> str:
    """`url` without its password when that is its user's password in the local
    credentials file (a subprocess reads it there itself); else `url` as it is."""
    parsed = make_url(url)
    if (
        parsed.username
        and parsed.password is not None
        and credentials.get(section, parsed.username) == parsed.password
    ):
        return parsed._replace(password=None).render_as_string(hide_password=False)
    return url


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment, with a `shopflow` subprocess pointed at `settings`'
    servers, topics and groups (and `extra` SHOPFLOW_* variables, which take precedence).
    The subprocess gets the servers' state dir (SHOPFLOW_INFRA_DIR) and reads its
    passwords from the credentials file there; it is the service's principal unless the
    settings name another."""
    credentials = settings.local_credentials()
    env = {k: v for k, v in os.environ.items() if k not in _IDENTITY}
    env.update(
        {
            "SHOPFLOW_INFRA_DIR": str(settings.infra_dir.resolve()),
            "SHOPFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SHOPFLOW_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol.value,
            "SHOPFLOW_DATABASE_URL": _without_local_password(
                settings.database_url, credentials, "postgres"
            ),
            "SHOPFLOW_QUERY_DATABASE_URL": _without_local_password(
                settings.query_database_url, credentials, "postgres"
            ),
            "SHOPFLOW_MIGRATION_DATABASE_URL": _without_local_password(
                settings.migration_database_url, credentials, "postgres"
            ),
            "SHOPFLOW_REDIS_URL": _without_local_password(settings.redis_url, credentials, "redis"),
            "SHOPFLOW_REDIS_KEY_PREFIX": settings.redis_key_prefix,
            "SHOPFLOW_TOPIC_PREFIX": settings.topic_prefix,
            "SHOPFLOW_CONSUMER_GROUP": settings.consumer_group,
            "SHOPFLOW_COMMAND_PARTITIONS": str(settings.command_partitions),
            "SHOPFLOW_EVENT_PARTITIONS": str(settings.event_partitions),
            "SHOPFLOW_DEAD_LETTER_PARTITIONS": str(settings.dead_letter_partitions),
            "SHOPFLOW_REPLICATION_FACTOR": str(settings.replication_factor),
            # A free port for each worker's metrics and health: runs start several workers
            # on this machine, beside whatever else listens here.
            "SHOPFLOW_WORKER_HTTP_PORT": "0",
        }
    )
    # Redis through Sentinels, or the one server of the URL (not an inherited list).
    env.pop(env_name("redis_sentinels"), None)
    if settings.redis_sentinels is not None:
        env[env_name("redis_sentinels")] = settings.redis_sentinels
        env[env_name("redis_sentinel_service")] = settings.redis_sentinel_service
        env[env_name("redis_sentinel_username")] = settings.redis_sentinel_username or ""
        password = settings.redis_sentinel_password
        local = credentials.get("sentinel", settings.redis_sentinel_username or "")
        if password is not None and password.get_secret_value() != local:
            env[env_name("redis_sentinel_password")] = password.get_secret_value()
    if settings.kafka_username is not None:
        env[env_name("kafka_username")] = settings.kafka_username
    if settings.kafka_password is not None:
        env[env_name("kafka_password")] = settings.kafka_password.get_secret_value()
    if settings.kafka_ssl_cafile is not None:
        env[env_name("kafka_ssl_cafile")] = str(settings.kafka_ssl_cafile)
    env.update(extra)
    return env


async def wait_for_brokers(admin_kafka: KafkaConnection, brokers: int) -> None:
    """Until the cluster has `brokers` registered brokers (scripts/infra.sh's readiness
    probe cannot authenticate, so it does not count them: a topic with a replica per
    broker cannot be created before they are all there)."""
    deadline = time.monotonic() + BROKERS_TIMEOUT_S
    seen = 0
    while True:
        admin = admin_kafka.admin()
        try:
            await admin.start()
            seen = len((await admin.describe_cluster())["brokers"])
        except KafkaError:
            seen = 0
        finally:
            await admin.close()
        if seen >= brokers:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Kafka at {admin_kafka.bootstrap} has {seen} of {brokers} brokers after "
                f"{BROKERS_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(POLL_S)


async def _until_visible(settings: Settings) -> None:
    """Until each bootstrap broker authenticates the service's principal and shows it the
    run's topics (the users and ACLs just provisioned reach the brokers through the
    metadata log, each at its own pace), and the brokers grant it what a worker checks
    before it starts."""
    service = kafka_connection(settings, SERVICE)
    names = list(planned_topics(settings))
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    for server in service.bootstrap_servers:
        one = KafkaConnection(
            (server,),
            service.security_protocol,
            service.principal,
            service.password,
            service.ssl_cafile,
        )
        while True:
            admin = one.admin()
            problem = ""
            try:
                await admin.start()
                described = await admin.describe_topics(names)
                failed = [t["topic"] for t in described if t["error_code"]]
                if failed:
                    problem = f"topics {', '.join(failed)} not visible"
            except KafkaError as error:
                problem = repr(error)
            finally:
                await admin.close()
            if not problem:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{service.principal} on {server}: {problem} {VISIBLE_TIMEOUT_S:.0f} s "
                    "after provisioning"
                )
            await asyncio.sleep(POLL_S)
    # What a worker checks before it starts (shopflow.app.prepare): every right of the
    # service's row, on the topics and on the run's consumer groups. On a fresh cluster
    # the groups' coordinator (__consumer_offsets) is not there for a second or so, and
    # a group that cannot be described counts as one the service may not read.
    while missing := await missing_rights(settings, service):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{service.principal} {VISIBLE_TIMEOUT_S:.0f} s after provisioning still "
                f"may not: {', '.join(missing)}"
            )
        await asyncio.sleep(POLL_S)


async def create_scratch_topics(settings: Settings, *, brokers: int | None = None) -> list[str]:
    """The run's topics and the contract's ACLs on them, as `shopflow topics create` makes
    them, as the Kafka admin: waits until the cluster has `brokers` brokers (the
    replication factor by default), creates the missing topics, provisions the ACLs (and,
    with local credentials, the SCRAM users of the contract's principals), then waits
    until the service's principal sees the topics on every bootstrap broker. Returns the
    topics created."""
    admin = kafka_connection(settings, ADMIN)
    await wait_for_brokers(admin, brokers or settings.replication_factor)
    created = await ensure_topics(settings, admin)
    await provision(settings, admin, local_users=settings.kafka_username is None)
    await _until_visible(settings)
    return created


async def delete_scratch_topics(settings: Settings) -> None:
    """As the Kafka admin: delete every topic of the run (those behind its prefix), then
    the ACLs on the run's topics."""
    admin_kafka = kafka_connection(settings, ADMIN)
    admin = admin_kafka.admin()
    await admin.start()
    ours: list[str] = []
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
    # The contract's topics behind the prefix have ACLs whether or not they were made.
    await revoke_topic_acls(admin_kafka, sorted({*ours, *Topics(settings.topic_prefix).all()}))


async def partitions_of(kafka: KafkaConnection, topic: str) -> list[int]:
    """The topic's partition numbers, asked as `kafka`'s principal (one that may describe
    it: a result topic's reader, say, where the writer of the commands may not)."""
    admin = kafka.admin()
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise for_code(described["error_code"])(f"describing {topic} as {kafka.principal}")
    return sorted(p["partition"] for p in described["partitions"])


@asynccontextmanager
async def side_topics(
    settings: Settings, label: str, partitions: dict[str, int]
) -> AsyncIterator[Topics]:
    """Contract topics behind a prefix of their own beside the run's (`<run prefix><label>-
    <random>.`), for a bare-aiokafka ceiling that must run as the same principals as
    shopflow: `partitions` maps contract topic names to partition counts. Created as the
    Kafka admin with the contract's ACLs for that prefix; deleted, ACLs and all, at exit."""
    side = settings.model_copy(
        update={"topic_prefix": f"{settings.topic_prefix}{label}-{secrets.token_hex(3)}."}
    )
    topics = Topics(side.topic_prefix)
    admin_kafka = kafka_connection(settings, ADMIN)
    admin = admin_kafka.admin()
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.name(t), count, settings.replication_factor)
                for t, count in partitions.items()
            ]
        )
        await provision(side, admin_kafka, local_users=False)
        yield topics
    finally:
        try:
            await admin.delete_topics([topics.name(t) for t in partitions])
        finally:
            await admin.close()
            await revoke_topic_acls(admin_kafka, topics.all())
