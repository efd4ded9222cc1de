"""CONTRACT.md's Access table against the real broker (SCRAM-SHA-512, StandardAuthorizer,
the ACLs `shopflow topics create` provisions): every row allowed, and the nearest thing
it does not allow denied. The topics are a prefix of the module's own, provisioned as
`shopflow topics create` does and consumed by no service, so the records written here
reach nobody."""

import asyncio
import contextlib
import os

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    for_code,
)
from confluent_kafka.admin import AclBindingFilter

from shopflow.contracts.access import Grant, Operation, Resource
from shopflow.contracts.principals import (
    ACCOUNTS,
    CATALOG,
    GATEWAY,
    OPS,
    PAYMENTS,
    READER,
    SERVICE,
    STOREFRONT,
)
from shopflow.contracts.topics import (
    CART_ADD_ITEM,
    CART_EVENTS,
    CART_REMOVE_ITEM,
    CATALOG_EVENTS,
    CATALOG_UPSERT_PRODUCT,
    COMMAND_ROUTES,
    DEAD_LETTERS,
    ORDERS_EVENTS,
    ORDERS_PLACE,
    POINTS_CHARGE,
    POINTS_EVENTS,
    USERS_EVENTS,
    USERS_REGISTER,
    Topics,
)
from shopflow.kafka_access import ADMIN, kafka_connection
from shopflow.local_credentials import KAFKA_CA_FILE
from shopflow.ops.access import admin_client, binding, missing_rights, provision
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import KafkaSecurityProtocol, Settings
from shopflow.testing.session import provisioned
from tests.support.cli import explain, shopflow_with
from tests.support.service import isolated

TIMEOUT_S = 15


@pytest.fixture(scope="module")
async def acl_settings(test_settings: Settings) -> Settings:
    """Topics of the module's own, deleted (with their ACLs) with the session's."""
    settings = isolated(test_settings, "acl")
    await provisioned(settings)
    return settings


async def _produce(kafka: KafkaConnection, topic: str) -> None:
    producer = kafka.producer(enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=b"1"), TIMEOUT_S)
    finally:
        await producer.stop()


async def _consume(kafka: KafkaConnection, topic: str, group: str | None) -> None:
    """Join `group`, read `topic` from its start and commit: what a service's reader does.
    Without a group, read its partitions from their start (what a tool does)."""
    if group is None:
        consumer = kafka.consumer(enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await asyncio.wait_for(_partitions_of(kafka, topic), TIMEOUT_S)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            await asyncio.wait_for(consumer.getmany(timeout_ms=1000), TIMEOUT_S)
        finally:
            await consumer.stop()
        return
    consumer = kafka.consumer(
        topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.getmany(timeout_ms=1000), TIMEOUT_S)
        await asyncio.wait_for(consumer.commit(), TIMEOUT_S)
    finally:
        await consumer.stop()


async def _partitions_of(kafka: KafkaConnection, topic: str) -> list[TopicPartition]:
    """The topic's partitions as this principal's metadata request is answered: a topic
    it may not describe is refused with TopicAuthorizationFailed."""
    admin = kafka.admin()
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise for_code(described["error_code"])(topic)
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


WRITES_ALLOWED = [
    *((route.writer, route.topic) for route in COMMAND_ROUTES),
    *((GATEWAY, route.topic) for route in COMMAND_ROUTES if route.over_http),
    *((OPS, route.topic) for route in COMMAND_ROUTES),
    (SERVICE, POINTS_EVENTS),
    (SERVICE, ORDERS_EVENTS),
    (SERVICE, DEAD_LETTERS),
]

WRITES_DENIED = [
    (PAYMENTS, CART_ADD_ITEM),  # a producer of one topic writing another
    (STOREFRONT, POINTS_CHARGE),  # a customer-facing writer minting points
    (ACCOUNTS, CATALOG_UPSERT_PRODUCT),
    (CATALOG, USERS_REGISTER),
    (GATEWAY, USERS_REGISTER),  # not a command sent over HTTP
    (SERVICE, POINTS_CHARGE),  # the service writing a command topic
    (PAYMENTS, POINTS_EVENTS),  # forging a result downstream services believe
    (OPS, POINTS_EVENTS),
    (READER, CART_EVENTS),
    (STOREFRONT, DEAD_LETTERS),
]


@pytest.mark.parametrize(("principal", "topic"), WRITES_ALLOWED)
async def test_each_principal_writes_the_topics_of_its_row(
    acl_settings: Settings, principal: str, topic: str
) -> None:
    kafka = kafka_connection(acl_settings, principal)

    await _produce(kafka, Topics(acl_settings.topic_prefix).name(topic))


@pytest.mark.parametrize(("principal", "topic"), WRITES_DENIED)
async def test_a_write_outside_a_principals_row_is_denied(
    acl_settings: Settings, principal: str, topic: str
) -> None:
    kafka = kafka_connection(acl_settings, principal)

    # An idempotent producer of a principal that may write no topic at all is refused
    # its producer id first (ClusterAuthorizationFailed, KIP-679); the others, the topic.
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await _produce(kafka, Topics(acl_settings.topic_prefix).name(topic))


READS_ALLOWED = [
    (SERVICE, POINTS_CHARGE, "shopflow.acl-test"),
    (SERVICE, ORDERS_EVENTS, "shopflow.top-products-acl-test"),  # the aggregator
    (READER, USERS_EVENTS, "shop-reader.acl-test"),
    (READER, CATALOG_EVENTS, "shop-reader.acl-test"),
    (OPS, DEAD_LETTERS, "shopflow-ops.acl-test"),
    (OPS, POINTS_EVENTS, "shopflow-ops.acl-test"),
]

READS_DENIED_TOPIC = [
    (READER, POINTS_CHARGE, "shop-reader.acl-test"),  # commands are the service's
    (OPS, CART_REMOVE_ITEM, "shopflow-ops.acl-test"),  # ops writes commands, reads none
    (READER, DEAD_LETTERS, "shop-reader.acl-test"),
    # Writers have no group at all: read without one.
    (STOREFRONT, ORDERS_PLACE, None),  # a writer cannot read back what it wrote
    (PAYMENTS, POINTS_EVENTS, None),  # a writer is no reader
]

READS_DENIED_GROUP = [
    (SERVICE, POINTS_CHARGE, "billing.acl-test"),  # outside the `shopflow` prefix
    (READER, USERS_EVENTS, "shopflow.acl-test"),  # the service's groups
    (OPS, DEAD_LETTERS, "shop-reader.acl-test"),
]


@pytest.mark.parametrize(("principal", "topic", "group"), READS_ALLOWED)
async def test_each_principal_reads_the_topics_of_its_row_in_its_groups(
    acl_settings: Settings, principal: str, topic: str, group: str
) -> None:
    kafka = kafka_connection(acl_settings, principal)

    await _consume(kafka, Topics(acl_settings.topic_prefix).name(topic), group)


@pytest.mark.parametrize(("principal", "topic", "group"), READS_DENIED_TOPIC)
async def test_a_read_of_a_topic_outside_a_principals_row_is_denied(
    acl_settings: Settings, principal: str, topic: str, group: str | None
) -> None:
    kafka = kafka_connection(acl_settings, principal)

    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(kafka, Topics(acl_settings.topic_prefix).name(topic), group)


@pytest.mark.parametrize(("principal", "topic", "group"), READS_DENIED_GROUP)
async def test_a_consumer_outside_its_group_prefix_is_denied(
    acl_settings: Settings, principal: str, topic: str, group: str
) -> None:
    kafka = kafka_connection(acl_settings, principal)

    with pytest.raises(GroupAuthorizationFailedError):
        await _consume(kafka, Topics(acl_settings.topic_prefix).name(topic), group)


async def test_a_wrong_password_is_refused(acl_settings: Settings) -> None:
    kafka = kafka_connection(acl_settings, PAYMENTS).as_principal(PAYMENTS, "not-its-password")

    with pytest.raises(KafkaConnectionError):
        await _produce(kafka, Topics(acl_settings.topic_prefix).name(POINTS_CHARGE))


async def test_an_unknown_user_is_refused(acl_settings: Settings) -> None:
    kafka = kafka_connection(acl_settings, PAYMENTS).as_principal("mallory", "guess")

    with pytest.raises(KafkaConnectionError):
        await _produce(kafka, Topics(acl_settings.topic_prefix).name(POINTS_CHARGE))


async def test_a_client_without_credentials_is_refused(acl_settings: Settings) -> None:
    kafka = KafkaConnection.parse(acl_settings.kafka_bootstrap, security_protocol="PLAINTEXT")

    with pytest.raises(KafkaConnectionError):
        await _produce(kafka, Topics(acl_settings.topic_prefix).name(POINTS_CHARGE))


# --- who is refused learns why ----------------------------------------------------------


async def _revoked(settings: Settings, grant: Grant) -> None:
    """`grant` taken away, and in force: the brokers apply ACLs asynchronously."""
    admin = admin_client(kafka_connection(settings, ADMIN))
    rule = binding(grant)
    deleted = admin.delete_acls(
        [
            AclBindingFilter(
                rule.restype,
                rule.name,
                rule.resource_pattern_type,
                rule.principal,
                rule.host,
                rule.operation,
                rule.permission_type,
            )
        ]
    )
    for future in deleted.values():
        future.result(timeout=TIMEOUT_S)
    service = kafka_connection(settings, SERVICE)
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            if await missing_rights(settings, service):
                return
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("command", ["worker", "migrate"])
async def test_a_worker_whose_principal_lacks_a_right_refuses_to_start_naming_it(
    test_settings: Settings, command: str
) -> None:
    settings = isolated(test_settings, "rights")
    await provisioned(settings)
    events = Topics(settings.topic_prefix).name(POINTS_EVENTS)
    await _revoked(settings, Grant(SERVICE, Resource.TOPIC, events, Operation.WRITE))

    result = await shopflow_with(settings, command)

    assert result.exit_code == 1, explain(result)
    assert result.stderr == (
        "shopflow refuses to start: principal shopflow may not do what the service needs "
        f"(CONTRACT.md, Access): write topic {events}; an admin grants it with "
        "`shopflow topics create`\n"
    )


async def test_a_worker_with_a_wrong_password_says_kafka_refused_its_credentials(
    test_settings: Settings,
) -> None:
    settings = isolated(test_settings, "password")
    await provisioned(settings)

    result = await shopflow_with(
        settings, "worker", SHOPFLOW_KAFKA_USERNAME=SERVICE, SHOPFLOW_KAFKA_PASSWORD="wrong"
    )

    server = settings.kafka_bootstrap.split(",")[0]
    assert result.exit_code == 1, explain(result)
    assert result.stderr == (
        f"shopflow refuses to start: Kafka at {server} refused the credentials of "
        "principal shopflow\n"
    )


async def test_the_cli_says_which_principal_kafka_refused(acl_settings: Settings) -> None:
    result = await shopflow_with(
        acl_settings,
        "charge",
        "7",
        "5",
        SHOPFLOW_KAFKA_USERNAME=OPS,
        SHOPFLOW_KAFKA_PASSWORD="wrong",
    )

    server = acl_settings.kafka_bootstrap.split(",")[0]
    assert result.exit_code == 2, explain(result)
    assert result.stderr == f"Kafka at {server} refused the credentials of principal {OPS}\n"


async def test_the_cli_says_which_topic_its_principal_may_not_use(
    acl_settings: Settings,
) -> None:
    # The storefront writes carts and orders, and may not mint points.
    result = await shopflow_with(
        acl_settings,
        "charge",
        "7",
        "5",
        "--no-wait",
        SHOPFLOW_KAFKA_USERNAME=STOREFRONT,
        SHOPFLOW_KAFKA_PASSWORD=acl_settings.local_credentials().require(
            "kafka", STOREFRONT, configure=""
        ),
    )

    charges = Topics(acl_settings.topic_prefix).name(POINTS_CHARGE)
    assert result.exit_code == 2, explain(result)
    assert f"principal {STOREFRONT} may not use topic {charges}" in result.stderr


# --- SASL_SSL ---------------------------------------------------------------------------


def _tls(settings: Settings, cafile: str | None) -> Settings:
    """`settings` on the brokers' SASL_SSL listener (scripts/infra.sh: the plain port +
    200, or SHOPFLOW_KAFKA_SSL_PORT)."""
    servers = [s.strip().rpartition(":") for s in settings.kafka_bootstrap.split(",")]
    first = int(servers[0][2])
    tls_first = int(os.environ.get("SHOPFLOW_KAFKA_SSL_PORT", first + 200))
    bootstrap = ",".join(f"{host}:{tls_first + int(port) - first}" for host, _, port in servers)
    return settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_security_protocol": KafkaSecurityProtocol.SASL_SSL,
            "kafka_ssl_cafile": cafile,
        }
    )


async def test_a_client_connects_over_sasl_ssl_trusting_the_local_ca(
    acl_settings: Settings,
) -> None:
    tls = _tls(acl_settings, str(acl_settings.infra_dir / KAFKA_CA_FILE))

    await _produce(kafka_connection(tls, PAYMENTS), Topics(tls.topic_prefix).name(POINTS_CHARGE))
    await _consume(
        kafka_connection(tls, READER),
        Topics(tls.topic_prefix).name(POINTS_EVENTS),
        "shop-reader.acl-tls-test",
    )


async def test_a_sasl_ssl_client_that_does_not_trust_the_ca_is_refused(
    acl_settings: Settings,
) -> None:
    tls = _tls(acl_settings, None)  # the system's CAs only: the local CA is not one

    with pytest.raises(KafkaConnectionError):
        await _produce(
            kafka_connection(tls, PAYMENTS), Topics(tls.topic_prefix).name(POINTS_CHARGE)
        )


async def test_provisioning_removes_a_right_granted_beyond_the_table(
    test_settings: Settings,
) -> None:
    settings = isolated(test_settings, "stray")
    await provisioned(settings)
    charges = Topics(settings.topic_prefix).name(POINTS_CHARGE)
    stray = Grant(STOREFRONT, Resource.TOPIC, charges, Operation.WRITE)  # minting points
    admin = admin_client(kafka_connection(settings, ADMIN))
    for future in admin.create_acls([binding(stray)]).values():
        future.result(timeout=TIMEOUT_S)
    async with asyncio.timeout(TIMEOUT_S):  # in force (the brokers apply ACLs later)
        while True:
            with contextlib.suppress(TopicAuthorizationFailedError):
                await _produce(kafka_connection(settings, STOREFRONT), charges)
                break
            await asyncio.sleep(0.1)

    access = await provision(settings, kafka_connection(settings, ADMIN), local_users=False)

    assert access.removed == 1
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(kafka_connection(settings, STOREFRONT), charges)
