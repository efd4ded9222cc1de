"""CONTRACT.md's Access table and the brokers: applying it (`provision`, which `shopflow
topics create` runs as an admin principal: the SCRAM users of the local servers'
principals and the ACLs of `contracts.access`), and reading what a principal may do
(`missing_rights`, which a worker runs as itself before it starts).

aiokafka's admin client can create neither SCRAM users nor ACLs, nor ask what a client
may do; confluent-kafka's (librdkafka) can, so this module, and only this one, uses it.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from shopflow.contracts.access import (
    Grant,
    Operation,
    Resource,
    group_grants,
    principals,
    topic_grants,
)
from shopflow.contracts.principals import SERVICE
from shopflow.contracts.topics import COMMAND_ROUTES, Topics
from shopflow.local_credentials import ensure_local_passwords
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# librdkafka's default; the broker keeps the salted hash, never the password.
SCRAM_ITERATIONS = 4096
TIMEOUT_S = 30.0

_OPERATIONS = {
    Operation.READ: AclOperation.READ,
    Operation.WRITE: AclOperation.WRITE,
    Operation.DESCRIBE: AclOperation.DESCRIBE,
    Operation.DESCRIBE_CONFIGS: AclOperation.DESCRIBE_CONFIGS,
}
_RESOURCES = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.CLUSTER: ResourceType.BROKER,  # librdkafka's name for the cluster resource
}


@dataclass(frozen=True)
class Provisioned:
    users: list[str]  # SCRAM users made or updated
    acls: int  # ACL bindings in force for these topics and the groups
    removed: int = 0  # bindings on these topics beyond the table, deleted


def admin_client(kafka: KafkaConnection) -> AdminClient:
    """confluent-kafka's admin client for the same servers and identity."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "security.protocol": kafka.security_protocol,
        "socket.timeout.ms": int(TIMEOUT_S * 1000),
        # librdkafka's own lines go through Python's logging (shopflow.logs), warnings and
        # worse only: at its default level it prints a line each time a client is closed.
        "logger": log,
        "log_level": 4,
    }
    if kafka.principal is not None:
        config.update(
            {
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": kafka.principal,
                "sasl.password": kafka.password,
            }
        )
    if kafka.ssl_cafile is not None:
        config["ssl.ca.location"] = kafka.ssl_cafile
    return AdminClient(config)


def binding(grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCES[grant.resource],
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        f"User:{grant.principal}",
        "*",
        _OPERATIONS[grant.operation],
        AclPermissionType.ALLOW,
    )


def _wait(futures: Iterable[Future[Any]]) -> None:
    for future in futures:
        future.result(timeout=TIMEOUT_S)


def _upsert_users(admin: AdminClient, passwords: dict[str, str]) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in sorted(passwords.items())
    ]
    _wait(admin.alter_user_scram_credentials(upserts).values())
    # As with ACLs (below): in force once the broker has read them, not when answered.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            described = admin.describe_user_scram_credentials(sorted(passwords))
            assert isinstance(described, dict)  # a future per user, when users are named
            _wait(described.values())
            return
        except KafkaException:  # ResourceNotFound: not there yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _filter(
    restype: ResourceType | str | int,
    name: str | None,
    pattern: ResourcePatternType | str | int,
    principal: str | None = None,
    host: str | None = None,
    operation: AclOperation | str | int = AclOperation.ANY,
    permission: AclPermissionType | str | int = AclPermissionType.ANY,
) -> AclBindingFilter:
    """A filter of ACL bindings; None matches any (librdkafka's stub says str)."""
    return AclBindingFilter(
        restype,
        name,  # type: ignore[arg-type]
        pattern,
        principal,  # type: ignore[arg-type]
        host,  # type: ignore[arg-type]
        operation,
        permission,
    )


_EVERY_ACL = _filter(ResourceType.ANY, None, ResourcePatternType.ANY)


def _described(admin: AdminClient) -> set[AclBinding]:
    found: list[AclBinding] = admin.describe_acls(_EVERY_ACL).result(timeout=TIMEOUT_S)
    return set(found)


def _until_applied(admin: AdminClient, applied: Callable[[set[AclBinding]], bool]) -> None:
    """Return once the broker's bindings satisfy `applied`. CreateAcls and DeleteAcls
    answer when the controller has committed the change; the broker's authorizer (and
    DescribeAcls) has it once it has read the metadata log that far, which took up to 2 s
    here: a client started in between was still denied (or still allowed)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not applied(_described(admin)):
        if time.monotonic() > deadline:
            raise ProvisioningFailed(f"the brokers did not apply the ACLs within {TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def _create_acls(admin: AdminClient, grants: list[Grant]) -> None:
    wanted = {binding(g) for g in grants}
    _wait(admin.create_acls(sorted(wanted, key=str)).values())
    _until_applied(admin, lambda present: wanted <= present)


def _delete_acls(admin: AdminClient, filters: list[AclBindingFilter]) -> int:
    """Delete what `filters` match, once applied; returns how many bindings."""
    deleted = {b for future in admin.delete_acls(filters).values() for b in future.result()}
    _until_applied(admin, lambda present: not deleted & present)
    return len(deleted)


def _remove_strays(admin: AdminClient, grants: list[Grant]) -> int:
    """Delete what the contract's principals are allowed on these topics beyond
    `grants` (a right granted by hand, or one a route no longer gives), so that on the
    service's topics the ACLs are exactly the table; returns how many. Rules on other
    topics, on groups and for other principals are not this table's to judge."""
    names = {g.name for g in grants if g.resource is Resource.TOPIC}
    ours = {f"User:{p}" for p in principals()}
    wanted = {binding(g) for g in grants}
    strays = [
        _filter(
            found.restype,
            found.name,
            found.resource_pattern_type,
            found.principal,
            found.host,
            found.operation,
            found.permission_type,
        )
        for found in _described(admin)
        if found.restype == ResourceType.TOPIC
        and found.name in names
        and found.principal in ours
        and found not in wanted
    ]
    return _delete_acls(admin, strays) if strays else 0


async def provision(
    settings: Settings, kafka: KafkaConnection, *, local_users: bool
) -> Provisioned:
    """The ACLs of the topics behind `settings.topic_prefix` and of the groups, and on
    those topics no more for the table's principals (`_remove_strays`); with
    `local_users`, also a SCRAM user for every principal of the table, its password
    from the local credentials file (made there at the first start)."""
    topics = Topics(settings.topic_prefix)
    grants = topic_grants(topics) + group_grants()
    passwords: dict[str, str] = {}
    if local_users:
        credentials = ensure_local_passwords(settings.infra_dir, "kafka", principals())
        passwords = {p: credentials.require("kafka", p, configure="") for p in principals()}

    def run() -> int:
        admin = admin_client(kafka)
        if passwords:
            _upsert_users(admin, passwords)
        _create_acls(admin, grants)
        return _remove_strays(admin, grants)

    removed = await asyncio.to_thread(_explained, run)
    if passwords:
        await _await_logins(kafka, kafka.as_principal(SERVICE, passwords[SERVICE]))
    return Provisioned(sorted(passwords), len(grants), removed)


async def _await_logins(admin_kafka: KafkaConnection, kafka: KafkaConnection) -> None:
    """Return once every broker of the cluster accepts `kafka`'s login: a SCRAM user is
    in force on a broker once that broker has read it from the metadata log, and
    `_upsert_users` saw it on one broker only (on three, the others refused it for a
    moment). The brokers are listed as `admin_kafka`, a user every broker has from its
    format, since a client of `kafka` would fail on the first broker that refuses it."""
    admin = admin_kafka.admin()
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
    finally:
        await admin.close()
    options = kafka.options()
    del options["bootstrap_servers"]
    deadline = time.monotonic() + TIMEOUT_S
    for broker in brokers:
        while True:
            try:
                connection = await create_conn(broker["host"], broker["port"], **options)
            except (SaslAuthenticationFailed, OSError):
                if time.monotonic() > deadline:
                    raise ProvisioningFailed(
                        f"broker {broker['node_id']} still refuses the new SCRAM users "
                        f"after {TIMEOUT_S:.0f} s"
                    ) from None
                await asyncio.sleep(0.1)
                continue
            connection.close()
            break


async def revoke_topic_acls(kafka: KafkaConnection, names: list[str]) -> None:
    """Delete every ACL on the topics `names` (deleted topics: a test session's); the
    group rules stay, shared by every topic prefix."""
    if names:
        await asyncio.to_thread(
            _explained,
            lambda: _delete_acls(
                admin_client(kafka),
                [
                    _filter(ResourceType.TOPIC, n, ResourcePatternType.LITERAL)
                    for n in sorted(names)
                ],
            ),
        )


class ProvisioningFailed(RuntimeError):
    pass


def _explained(run: Callable[[], T]) -> T:
    try:
        return run()
    except KafkaException as error:
        raise ProvisioningFailed(f"Kafka refused the provisioning: {error.args[0]}") from None


# An operation the brokers report a principal may do, and the ones that imply it.
_IMPLIED_BY = {
    AclOperation.READ: {AclOperation.READ, AclOperation.ALL},
    AclOperation.WRITE: {AclOperation.WRITE, AclOperation.ALL},
    AclOperation.DESCRIBE: {
        AclOperation.DESCRIBE,
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.ALL,
    },
    AclOperation.DESCRIBE_CONFIGS: {
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.ALL,
    },
}
_PHRASES = {
    Operation.READ: "read",
    Operation.WRITE: "write",
    Operation.DESCRIBE: "describe",
    Operation.DESCRIBE_CONFIGS: "describe the configs of",
}


def _may(allowed: set[AclOperation], operation: Operation) -> bool:
    return bool(allowed & _IMPLIED_BY[_OPERATIONS[operation]])


# What a broker answers while it cannot tell yet (a group coordinator still loading on a
# fresh cluster, a leader being elected): asked again, never taken for a missing right.
_NOT_YET = frozenset(
    {
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)


def _authorized(
    describe: Callable[[list[str]], dict[str, Future[Any]]], names: list[str]
) -> dict[str, set[AclOperation]]:
    """Each name's authorized operations; none where the broker refused to describe it
    (it answers so for a topic that does not exist too, to hide which ones do). Names it
    could not answer for yet are asked again, for up to TIMEOUT_S."""
    allowed: dict[str, set[AclOperation]] = {}
    deadline = time.monotonic() + TIMEOUT_S
    pending = names
    while pending:
        retry = []
        for name, future in describe(pending).items():
            try:
                described = future.result(timeout=TIMEOUT_S)
            except KafkaException as error:
                if error.args[0].code() in _NOT_YET and time.monotonic() < deadline:
                    retry.append(name)
                else:
                    allowed[name] = set()
                continue
            allowed[name] = set(described.authorized_operations or ())
        pending = retry
        if pending:
            time.sleep(0.1)
    return allowed


async def missing_rights(settings: Settings, kafka: KafkaConnection) -> list[str]:
    """What the service's row of the Access table grants on its topics and consumer
    groups that the brokers do not let `kafka`'s principal do, each as a phrase ("read
    topic shop.points.charge"); empty when it may do all of it. Read from the brokers'
    own answer (DescribeTopics and DescribeGroups with the authorized operations), so it
    holds whatever ACLs or authorizer a deployment has."""
    topics = Topics(settings.topic_prefix)
    needed = [g for g in topic_grants(topics) if g.principal == SERVICE]
    groups = [settings.command_group(topics.name(r.topic)) for r in COMMAND_ROUTES]
    groups.append(settings.sales_aggregator_group)

    def run() -> list[str]:
        admin = admin_client(kafka)
        names = sorted({g.name for g in needed})
        on_topics = _authorized(
            lambda some: admin.describe_topics(
                TopicCollection(some), include_authorized_operations=True
            ),
            names,
        )
        on_groups = _authorized(
            lambda some: admin.describe_consumer_groups(some, include_authorized_operations=True),
            groups,
        )
        missing = [
            f"{_PHRASES[g.operation]} topic {g.name}"
            for g in needed
            if not _may(on_topics[g.name], g.operation)
        ]
        missing += [
            f"read consumer group {group}"
            for group in groups
            if not _may(on_groups[group], Operation.READ)
        ]
        return missing

    return await asyncio.to_thread(run)
