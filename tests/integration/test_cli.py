"""The `shopflow` command line against the session's running service.

The CLI commands call `asyncio.run`, which cannot run inside the test's event loop, and
the service's consumers only make progress while that loop runs; so each invocation
runs in a worker thread (`asyncio.to_thread`, tests.support.cli) while the test awaits it.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shopflow.cli.demo import DEMO_CHARGE, DEMO_PRODUCTS, DEMO_USERS
from shopflow.kafka_access import SERVICE, kafka_connection
from shopflow.persistence.reconciliation import describe, find_violations
from shopflow.producers.client import topic_partitions
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.queries.read_model import ReadModel
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.testing.session import provisioned
from tests.support.cli import explain, shopflow
from tests.support.database import balance_of
from tests.support.ids import new_command_id, new_entity_id


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, test_settings: Settings, service: Runtime) -> None:
    """Point the CLI (which reads Settings from the environment) at the test servers."""
    monkeypatch.setenv("SHOPFLOW_KAFKA_BOOTSTRAP", test_settings.kafka_bootstrap)
    monkeypatch.setenv("SHOPFLOW_DATABASE_URL", test_settings.database_url)
    monkeypatch.setenv("SHOPFLOW_MIGRATION_DATABASE_URL", test_settings.migration_database_url)
    monkeypatch.setenv("SHOPFLOW_TOPIC_PREFIX", test_settings.topic_prefix)


@contextlib.asynccontextmanager
async def _reading(kafka: KafkaConnection, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer assigned every partition of `topic` (no group, nothing committed)."""
    # The partitions come from a producer: a consumer's partitions_for_topic only reads
    # metadata it happens to hold (None before it has any).
    producer = kafka.producer()
    await producer.start()
    try:
        partitions = await topic_partitions(producer, topic)
    finally:
        await producer.stop()
    consumer = kafka.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        yield consumer
    finally:
        await consumer.stop()


async def _values_since(
    consumer: AIOKafkaConsumer, since: dict[TopicPartition, int]
) -> list[bytes | None]:
    """The value of every record appended to the consumer's partitions since `since`."""
    until = await consumer.end_offsets(list(since))
    for tp, offset in since.items():
        consumer.seek(tp, offset)
    values: list[bytes | None] = []
    async with asyncio.timeout(15):
        while [tp for tp in since if await consumer.position(tp) < until[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            values.extend(record.value for records in batches.values() for record in records)
    return values


@pytest.mark.usefixtures("cli_env")
async def test_register_user_then_charge_prints_points_charged() -> None:
    user_id = new_entity_id()

    registered = await shopflow("register-user", user_id, "Alice")
    charged = await shopflow(
        "charge", user_id, 2500, "--command-id", new_command_id("cli"), "--timeout", 20
    )

    assert registered.exit_code == 0, explain(registered)
    assert json.loads(registered.stdout)["type"] == "UserRegistered"
    assert charged.exit_code == 0, explain(charged)
    event = json.loads(charged.stdout)
    assert (event["type"], event["user_id"], event["balance"]) == ("PointsCharged", user_id, 2500)
    assert charged.stdout.startswith("{\n  ")  # indented


@pytest.mark.usefixtures("cli_env")
async def test_charging_an_unknown_user_exits_1_with_the_reason_on_stderr() -> None:
    user_id = new_entity_id()

    result = await shopflow("charge", user_id, 100)

    assert result.exit_code == 1, explain(result)
    assert json.loads(result.stdout)["type"] == "PointsChargeRejected"
    assert result.stderr == f"rejected: unknown_user (user {user_id})\n"


@pytest.mark.usefixtures("cli_env")
async def test_an_amount_outside_the_contract_exits_2_and_sends_nothing(
    test_settings: Settings,
) -> None:
    command_id = new_command_id("cli")
    topic = f"{test_settings.topic_prefix}shop.points.charge"

    # The command topic, read as the service reads it (only its principal may).
    async with _reading(kafka_connection(test_settings, SERVICE), topic) as reader:
        before = await reader.end_offsets(list(reader.assignment()))
        result = await shopflow("charge", new_entity_id(), 0, "--command-id", command_id)
        appended = await _values_since(reader, before)

    assert result.exit_code == 2, explain(result)
    assert result.stdout == ""
    assert result.stderr.startswith("invalid ChargePoints: amount: ")
    assert result.stderr.count("\n") == 1
    # Looked for on the topic, not in the ledger: had the CLI sent this command, the
    # service would have dead-lettered it (amount 0 breaks the contract) and written no
    # ledger row, so "no ledger row" held whether or not it was sent. No wait is needed:
    # the CLI returns only after the broker has acknowledged what it sent.
    assert [v for v in appended if v is not None and command_id.encode() in v] == []


@pytest.mark.usefixtures("cli_env")
async def test_place_order_with_both_items_and_from_cart_exits_2() -> None:
    result = await shopflow("place-order", new_entity_id(), "--item", "7:2", "--from-cart")

    assert result.exit_code == 2, explain(result)
    assert result.stdout == ""
    assert "--from-cart" in result.stderr


@pytest.mark.usefixtures("cli_env")
async def test_send_raw_json_still_works_and_a_resend_is_replayed(service: Runtime) -> None:
    user_id = new_entity_id()
    register = {"command_id": new_command_id("cli"), "user_id": user_id, "name": "Bo"}
    charge = {"command_id": new_command_id("cli"), "user_id": user_id, "amount": 700}

    registered = await shopflow("send", "shop.users.register", json.dumps(register))
    first = await shopflow("send", "shop.points.charge", json.dumps(charge))
    again = await shopflow("send", "shop.points.charge", json.dumps(charge))

    assert registered.exit_code == 0, explain(registered)
    assert first.exit_code == 0, explain(first)
    assert again.exit_code == 0, explain(again)
    assert json.loads(first.stdout)["balance"] == 700
    assert json.loads(again.stdout) == json.loads(first.stdout)  # same event_id: a replay
    assert await balance_of(service.engine, user_id) == 700


@pytest.mark.usefixtures("cli_env")
async def test_send_rejects_json_outside_the_contract_with_exit_2() -> None:
    payload = {"command_id": new_command_id("cli"), "user_id": "1", "amount": 5}

    result = await shopflow("send", "shop.points.charge", json.dumps(payload))

    assert result.exit_code == 2, explain(result)
    assert result.stderr.startswith("invalid ChargePoints: user_id: ")


@pytest.mark.usefixtures("cli_env")
async def test_demo_data_twice_applies_everything_once(service: Runtime) -> None:
    # The only test that uses the fixed demo ids (products 1-8, users 1-3).
    first = await shopflow("demo-data")
    second = await shopflow("demo-data")

    assert first.exit_code == 0, explain(first)
    assert second.exit_code == 0, explain(second)
    expected_lines = len(DEMO_PRODUCTS) + 2 * len(DEMO_USERS)
    assert len(first.stdout.splitlines()) == expected_lines
    assert second.stdout.count("(replayed)") == expected_lines
    read_model = ReadModel(service.engine)
    for product_id, name, price, stock in DEMO_PRODUCTS:
        product = await read_model.product(product_id)
        assert product is not None
        assert (product.name, product.price, product.stock) == (name, price, stock)
    await read_model.close()
    for user_id, _ in DEMO_USERS:
        assert await balance_of(service.engine, user_id) == DEMO_CHARGE


@pytest.mark.usefixtures("cli_env")
async def test_check_reports_what_find_violations_finds(service: Runtime) -> None:
    # The session database is shared, so compare with a direct run rather than assume it clean.
    violations = await find_violations(service.engine)

    result = await shopflow("check")

    if violations:
        assert result.exit_code == 1, explain(result)
        assert result.stdout == describe(violations) + "\n"
    else:
        assert result.exit_code == 0, explain(result)
        assert result.stdout == "all invariants hold\n"


@pytest.mark.usefixtures("cli_env")
async def test_no_wait_prints_the_command_id_and_a_missed_deadline_exits_2(
    monkeypatch: pytest.MonkeyPatch, test_settings: Settings
) -> None:
    command_id = new_command_id("cli")
    # Topics no service consumes, so that the deadline is missed for sure (the service
    # can answer within a few milliseconds).
    unserved = test_settings.model_copy(
        update={"topic_prefix": f"{test_settings.topic_prefix}unserved."}
    )
    await provisioned(unserved)

    sent = await shopflow(
        "register-user", new_entity_id(), "Cy", "--command-id", command_id, "--no-wait"
    )
    monkeypatch.setenv("SHOPFLOW_TOPIC_PREFIX", unserved.topic_prefix)
    late = await shopflow("charge", new_entity_id(), 5, "--timeout", "0.5")

    assert sent.exit_code == 0, explain(sent)
    assert json.loads(sent.stdout) == {"sent": command_id}
    assert late.exit_code == 2, explain(late)
    assert late.stderr.startswith("timeout: no result for command cli-")
