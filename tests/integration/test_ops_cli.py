"""The operator commands (`shopflow dead-letters`, `topics`, `lag`, `config`) against the
session's servers and running service: real dead letters made by poison records, and
what the commands print checked against what Kafka and PostgreSQL hold.

As tests.support.cli says, each invocation runs in a worker thread while the test's event loop
(and with it the service's consumers) keeps running.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import typer
from aiokafka import TopicPartition
from pydantic import SecretStr
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.core import TyperGroup
from typer.testing import Result

from shopflow.cli import app
from shopflow.contracts.access import group_grants, principals, topic_grants
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import DeadLetter, DeadLetterReason, dead_letter_id
from shopflow.contracts.events import PointsCharged
from shopflow.contracts.topics import CART_ADD_ITEM, POINTS_CHARGE, Topics
from shopflow.kafka_access import SERVICE, kafka_connection
from shopflow.kafka_admin import planned_topics
from shopflow.kafka_lag import service_consumer_groups
from shopflow.kafka_offsets import log_ranges
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings, env_name
from tests.support.cli import explain, shopflow
from tests.support.database import balance_of, transactions_of
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import funded_user, new_product, placed_order, registered_user

BIG = 900_000  # a value whose published dead letter is cut (CONTRACT.md, "Dead letters")


@pytest.fixture
def ops_env(monkeypatch: pytest.MonkeyPatch, test_settings: Settings, service: object) -> Settings:
    """Every setting of the test session in the environment the CLI reads Settings from."""
    for name in Settings.model_fields:
        value = getattr(test_settings, name)
        if value is None:  # unset stays unset (the default)
            monkeypatch.delenv(env_name(name), raising=False)
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        monkeypatch.setenv(env_name(name), str(value.value if isinstance(value, Enum) else value))
    return test_settings


def output_json(result: Result) -> Any:
    assert result.exit_code == 0, explain(result)
    return json.loads(result.stdout)


def ids_in(rows: list[dict[str, Any]]) -> set[UUID]:
    return {UUID(row["dead_letter_id"]) for row in rows}


async def dead_letter_for(client: ShopflowClient, letter_id: UUID) -> DeadLetter:
    """Once published, a letter is recorded: the service publishes from the record."""
    return await client.wait_for_dead_letter(lambda d: d.dead_letter_id == letter_id)


# Command topics: read as the service reads them (only its principal may).
async def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[TopicPartition, int]:
    partitioned = [TopicPartition(topic, p) for p in range(partitions)]
    logs = await log_ranges(kafka_connection(settings, SERVICE), partitioned)
    return {tp: log.end for tp, log in logs.items()}


async def records_since(
    settings: Settings, since: dict[TopicPartition, int]
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record appended to these partitions after `since`."""
    until = await end_offsets(settings, next(iter(since)).topic, len(since))
    consumer = kafka_connection(settings, SERVICE).consumer(enable_auto_commit=False)
    await consumer.start()
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(15):
            while [tp for tp in since if await consumer.position(tp) < until[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                records += [(r.key, r.value) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


# --- dead-letters list and show ---------------------------------------------------------


async def test_list_filters_by_reason_topic_and_time_and_show_gives_the_bytes(
    ops_env: Settings, client: ShopflowClient
) -> None:
    topics = Topics(ops_env.topic_prefix)
    charge_topic, cart_topic = topics.name(POINTS_CHARGE), topics.name(CART_ADD_ITEM)
    since = datetime.now(UTC).isoformat()
    user_id = await registered_user(client)
    key = str(user_id).encode()
    not_json = b'{"command_id": "' + new_command_id("ops").encode() + b'", \xff'
    unknown_field = json.dumps(
        {
            "command_id": new_command_id("ops"),
            "user_id": user_id,
            "product_id": 7,
            "quantity": 1,
            "colour": "red",
        }
    ).encode()

    placed_json = await client.send_raw(charge_topic, key, not_json)
    placed_field = await client.send_raw(cart_topic, key, unknown_field)
    json_id = dead_letter_id(charge_topic, placed_json.partition, placed_json.offset)
    field_id = dead_letter_id(cart_topic, placed_field.partition, placed_field.offset)
    await dead_letter_for(client, json_id)
    await dead_letter_for(client, field_id)

    every = output_json(await shopflow("dead-letters", "list", "--json", "--since", since))
    by_reason = output_json(
        await shopflow(
            "dead-letters", "list", "--json", "--reason", "invalid_json", "--since", since
        )
    )
    # The contract's topic name finds the letters of the prefixed deployment.
    by_topic = output_json(
        await shopflow("dead-letters", "list", "--json", "--topic", CART_ADD_ITEM, "--since", since)
    )
    by_deployed_topic = output_json(
        await shopflow("dead-letters", "list", "--json", "--topic", cart_topic, "--since", since)
    )
    before = output_json(await shopflow("dead-letters", "list", "--json", "--until", since))
    shown_table = await shopflow("dead-letters", "list", "--since", since)

    assert {json_id, field_id} <= ids_in(every)
    [row] = [row for row in every if UUID(row["dead_letter_id"]) == json_id]
    assert row["reason"] == "invalid_json"
    assert (row["source_topic"], row["partition"], row["offset"]) == (
        charge_topic,
        placed_json.partition,
        placed_json.offset,
    )
    assert (row["key"], row["payload_size"], row["payload_truncated"]) == (
        str(user_id),
        len(not_json),
        False,
    )
    assert json_id in ids_in(by_reason)
    assert field_id not in ids_in(by_reason)
    assert {row["reason"] for row in by_reason} == {"invalid_json"}
    assert field_id in ids_in(by_topic)
    assert json_id not in ids_in(by_topic)
    assert {row["source_topic"] for row in by_topic} == {cart_topic}
    assert ids_in(by_deployed_topic) == ids_in(by_topic)
    assert not {json_id, field_id} & ids_in(before)
    assert shown_table.exit_code == 0, explain(shown_table)
    assert str(json_id) in shown_table.stdout
    assert str(field_id) in shown_table.stdout
    assert "invalid_message" in shown_table.stdout

    shown = output_json(await shopflow("dead-letters", "show", str(json_id), "--json"))
    shown_text = await shopflow("dead-letters", "show", str(field_id))
    missing = await shopflow("dead-letters", "show", "00000000-0000-0000-0000-000000000000")

    assert base64.b64decode(shown["value_base64"]) == not_json  # not UTF-8, byte for byte
    assert base64.b64decode(shown["key_base64"]) == key
    assert (shown["reason"], shown["source_topic"]) == ("invalid_json", charge_topic)
    assert shown_text.exit_code == 0, explain(shown_text)
    assert unknown_field.decode() in shown_text.stdout
    assert "invalid_message" in shown_text.stdout
    assert missing.exit_code == 1, explain(missing)
    assert missing.stderr.startswith("no dead letter 00000000-")


async def test_show_gives_the_whole_value_of_a_dead_letter_published_cut(
    ops_env: Settings, client: ShopflowClient, tmp_path: Path
) -> None:
    topic = Topics(ops_env.topic_prefix).name(POINTS_CHARGE)
    user_id = await registered_user(client)
    prefix = b'{"command_id": "' + new_command_id("ops-big").encode() + b'", "padding": "'
    big = prefix + b"x" * (BIG - len(prefix) - 2) + b'"}'
    placed = await client.send_raw(topic, str(user_id).encode(), big)
    letter_id = dead_letter_id(topic, placed.partition, placed.offset)
    published = await dead_letter_for(client, letter_id)
    assert published.payload_truncated  # else this test would show nothing
    value_file = tmp_path / "value.bin"

    shown = output_json(await shopflow("dead-letters", "show", str(letter_id), "--json"))
    shown_text = await shopflow(
        "dead-letters", "show", str(letter_id), "--value-out", str(value_file)
    )

    assert shown["payload_truncated"] is True
    assert shown["payload_size"] == BIG
    assert base64.b64decode(shown["value_base64"]) == big
    assert shown_text.exit_code == 0, explain(shown_text)
    assert value_file.read_bytes() == big
    assert big.decode() in shown_text.stdout
    assert "DOES NOT MATCH" not in shown_text.stdout  # the kept bytes have the letter's sha256


# --- dead-letters replay ----------------------------------------------------------------

# A bug that makes one command fail for good (a processing_failed dead letter): a trigger
# refusing the point transaction of command ids of this test's pattern. Dropping it is the
# fix, after which the replayed command applies.
_TRIGGER = "test_ops_replay_refused"
_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {_TRIGGER}() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'refused by the bug under test: %', NEW.command_id;
END $$ LANGUAGE plpgsql"""
_CREATE_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER} BEFORE INSERT ON point_transactions FOR EACH ROW
WHEN (NEW.command_id LIKE 'ops-replay-%') EXECUTE FUNCTION {_TRIGGER}()"""
_DROP_TRIGGER = f"DROP TRIGGER IF EXISTS {_TRIGGER} ON point_transactions"


@pytest.fixture
async def charge_bug(owner_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The bug in place; the test fixes it with `_DROP_TRIGGER` (dropped at the end anyway)."""
    async with owner_engine.begin() as connection:
        await connection.execute(text(_FUNCTION))
        await connection.execute(text(_DROP_TRIGGER))
        await connection.execute(text(_CREATE_TRIGGER))
    yield owner_engine
    async with owner_engine.begin() as connection:
        await connection.execute(text(_DROP_TRIGGER))


async def test_replay_after_a_fix_applies_the_command_once_however_often_it_is_replayed(
    ops_env: Settings, client: ShopflowClient, engine: AsyncEngine, charge_bug: AsyncEngine
) -> None:
    topic = Topics(ops_env.topic_prefix).name(POINTS_CHARGE)
    since = datetime.now(UTC).isoformat()
    user_id = await registered_user(client)
    charge = ChargePoints(command_id=new_command_id("ops-replay"), user_id=user_id, amount=777)
    value = charge.model_dump_json(exclude_none=True).encode()
    await client.send(charge)
    letter = await client.wait_for_dead_letter(
        lambda d: base64.b64decode(d.payload_base64) == value, timeout=60
    )
    assert letter.reason is DeadLetterReason.PROCESSING_FAILED
    assert "refused by the bug under test" in letter.error
    letter_id = str(letter.dead_letter_id)
    before = await end_offsets(ops_env, topic, ops_env.command_partitions)

    unchosen = await shopflow("dead-letters", "replay")
    unknown = await shopflow("dead-letters", "replay", "00000000-0000-0000-0000-000000000000")
    dry = await shopflow("dead-letters", "replay", letter_id, "--dry-run")
    dry_by_filter = await shopflow(
        "dead-letters",
        "replay",
        "--reason",
        "processing_failed",
        "--topic",
        POINTS_CHARGE,
        "--since",
        since,
        "--dry-run",
    )

    assert unchosen.exit_code == 2, explain(unchosen)
    assert unchosen.stderr.startswith("choose the dead letters to replay")
    assert unknown.exit_code == 1, explain(unknown)
    assert dry.exit_code == 0, explain(dry)
    assert letter_id in dry.stdout
    assert dry.stdout.endswith("dry run: would send back 1 dead letter; nothing sent\n")
    assert dry_by_filter.exit_code == 0, explain(dry_by_filter)
    assert letter_id in dry_by_filter.stdout
    assert await end_offsets(ops_env, topic, ops_env.command_partitions) == before
    assert await balance_of(engine, user_id) == 0
    assert client.results(charge.command_id) == []

    async with charge_bug.begin() as connection:  # the fix
        await connection.execute(text(_DROP_TRIGGER))
    replayed = await shopflow("dead-letters", "replay", letter_id)
    event = await client.wait_for_result(charge.command_id)
    after_one = await records_since(ops_env, before)

    assert replayed.exit_code == 0, explain(replayed)
    assert replayed.stdout == "sent back: 1 dead letter\n"
    assert after_one == [(str(user_id).encode(), value)]  # the original key and value
    assert isinstance(event, PointsCharged)
    assert (event.amount, event.balance) == (777, 777)

    again = await shopflow("dead-letters", "replay", letter_id)
    results = await client.wait_for_results(charge.command_id, count=2)
    after_two = await records_since(ops_env, before)

    assert again.exit_code == 0, explain(again)
    assert again.stdout == "sent back: 1 dead letter\n"
    assert after_two == [(str(user_id).encode(), value)] * 2
    assert {result.event_id for result in results} == {event.event_id}  # answered as a replay
    assert await balance_of(engine, user_id) == 777
    charges = [t for t in await transactions_of(engine, user_id) if t[2] == charge.command_id]
    assert charges == [("charge", 777, charge.command_id)]


# --- topics -----------------------------------------------------------------------------


async def test_topics_describe_shows_the_configured_partitions_and_create_makes_missing_ones(
    ops_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = planned_topics(ops_env)

    described = output_json(await shopflow("topics", "describe", "--json"))
    verbose = await shopflow("topics", "describe", "--verbose")
    existing = await shopflow("topics", "create")

    assert [topic["topic"] for topic in described] == list(planned)
    for topic in described:
        assert topic["exists"] is True
        assert (
            topic["partitions"]
            == planned[topic["topic"]].partitions
            == topic["configured_partitions"]
        )
        assert topic["replication_factor"] == ops_env.replication_factor
        assert topic["end_offsets"] == sum(p["end_offset"] for p in topic["per_partition"])
    by_name = {topic["topic"]: topic for topic in described}
    assert by_name[Topics(ops_env.topic_prefix).name(POINTS_CHARGE)]["partitions"] == 3
    assert by_name[Topics(ops_env.topic_prefix).dead_letters]["partitions"] == 1
    assert verbose.exit_code == 0, explain(verbose)
    assert "partition 2" in verbose.stdout
    assert existing.exit_code == 0, explain(existing)
    assert existing.stdout.splitlines() == [
        f"0 topics created, {len(planned)} were there already",
        f"SCRAM users of the local servers: {', '.join(principals())}",
        f"{len(topic_grants(Topics(ops_env.topic_prefix)) + group_grants())} ACLs in force",
    ]

    # Topics of a prefix of their own (deleted with the session's, which it begins with).
    fresh = ops_env.model_copy(update={"topic_prefix": f"{ops_env.topic_prefix}ops-create."})
    monkeypatch.setenv("SHOPFLOW_TOPIC_PREFIX", fresh.topic_prefix)
    missing = await shopflow("topics", "describe")
    created = await shopflow("topics", "create")

    assert missing.exit_code == 1, explain(missing)
    assert missing.stderr.startswith(f"missing: {fresh.topic_prefix}shop.users.register")
    assert created.exit_code == 0, explain(created)
    assert created.stdout.splitlines() == [
        *(f"created {name}" for name in planned_topics(fresh)),
        f"{len(planned)} topics created, 0 were there already",
        f"SCRAM users of the local servers: {', '.join(principals())}",
        f"{len(topic_grants(Topics(fresh.topic_prefix)) + group_grants())} ACLs in force",
    ]
    async with asyncio.timeout(15):  # until the brokers' metadata lists them all
        while True:
            now = await shopflow("topics", "describe", "--json")
            if now.exit_code == 0:
                break
            await asyncio.sleep(0.2)
    assert all(topic["exists"] for topic in json.loads(now.stdout))

    # The partition counts are the brokers', not the settings': fewer configured than
    # the topics have (which the service accepts) shows both.
    monkeypatch.setenv("SHOPFLOW_COMMAND_PARTITIONS", "2")
    fewer = output_json(await shopflow("topics", "describe", "--json"))
    charges = {topic["topic"]: topic for topic in fewer}[f"{fresh.topic_prefix}{POINTS_CHARGE}"]
    assert (charges["partitions"], charges["configured_partitions"]) == (3, 2)


# --- lag --------------------------------------------------------------------------------


async def test_lag_is_zero_once_the_service_drained_and_counts_a_group_that_never_read(
    ops_env: Settings, client: ShopflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await registered_user(client)
    charge = ChargePoints(command_id=new_command_id("ops-lag"), user_id=user_id, amount=5)
    assert isinstance(await client.send_and_wait(charge), PointsCharged)
    charge_group = f"{ops_env.consumer_group}.{Topics(ops_env.topic_prefix).name(POINTS_CHARGE)}"

    # Offsets are committed in the background once results are delivered: wait for it.
    async with asyncio.timeout(30):
        while True:
            drained = output_json(await shopflow("lag", "--json"))
            if all(group["lag"] == 0 for group in drained):
                break
            await asyncio.sleep(0.2)
    table = await shopflow("lag")

    assert [group["group"] for group in drained] == sorted(service_consumer_groups(ops_env))
    by_group = {group["group"]: group for group in drained}
    assert by_group[charge_group]["end_offsets"] > 0
    for group in drained:
        assert group["lag"] == sum(p["lag"] for p in group["partitions"]) == 0
        for partition in group["partitions"]:
            assert partition["committed"] in (None, partition["end"])
            assert partition["end"] == 0 or partition["committed"] == partition["end"]
    assert table.exit_code == 0, explain(table)
    assert "total" in table.stdout

    monkeypatch.setenv("SHOPFLOW_CONSUMER_GROUP", f"{ops_env.consumer_group}.never-ran")
    unread = output_json(await shopflow("lag", "--json"))

    never = {group["group"]: group for group in unread}[
        f"{ops_env.consumer_group}.never-ran.{Topics(ops_env.topic_prefix).name(POINTS_CHARGE)}"
    ]
    assert never["lag"] == never["end_offsets"] == by_group[charge_group]["end_offsets"] > 0
    assert {p["committed"] for p in never["partitions"]} == {None}


# --- config -----------------------------------------------------------------------------


async def test_config_prints_every_setting_with_the_passwords_masked(
    ops_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    password, redis_password = new_command_id("db-password"), new_command_id("redis-password")
    database_url = f"postgresql+asyncpg://shopflow:{password}@db.example:5432/shopflow"
    redis_url = f"redis://:{redis_password}@redis.example:6379/0"
    monkeypatch.setenv("SHOPFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("SHOPFLOW_REDIS_URL", redis_url)

    shown = await shopflow("config")
    as_json = await shopflow("config", "--json")

    for result in (shown, as_json):
        assert result.exit_code == 0, explain(result)
        assert password not in result.stdout
        assert redis_password not in result.stdout
    settings = json.loads(as_json.stdout)
    assert list(settings) == list(Settings.model_fields)
    assert settings["database_url"] == "postgresql+asyncpg://shopflow:***@db.example:5432/shopflow"
    assert settings["database_url"] == make_url(database_url).render_as_string(hide_password=True)
    assert settings["redis_url"] == "redis://:***@redis.example:6379/0"
    assert settings["topic_prefix"] == ops_env.topic_prefix
    assert settings["command_partitions"] == ops_env.command_partitions
    assert "SHOPFLOW_DATABASE_URL" in shown.stdout
    assert "db.example" in shown.stdout


# --- help -------------------------------------------------------------------------------


def test_every_operator_command_and_option_says_what_it_does() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = []
    for name in ("dead-letters", "topics", "lag", "config"):
        found = root.commands[name]
        assert found.help, name
        commands += list(found.commands.values()) if isinstance(found, TyperGroup) else [found]

    assert len(commands) == 7
    for command in commands:
        assert command.help, command.name
        for parameter in command.params:
            assert getattr(parameter, "help", None), f"{command.name} {parameter.name}"


@pytest.mark.usefixtures("ops_env")
async def test_orders_and_statement_show_a_users_history_and_refuse_an_unknown_user(
    client: ShopflowClient,
) -> None:
    user_id = await funded_user(client, 1_000)
    mug = await new_product(client, price=250, stock=5)
    placed = await placed_order(client, user_id, mug, 2)

    orders = output_json(await shopflow("orders", user_id, "--json"))
    statement = output_json(await shopflow("statement", user_id, "--json"))
    table = await shopflow("statement", user_id, "--limit", 1)
    unknown = await shopflow("orders", new_entity_id())

    assert [(o["order_id"], o["total"]) for o in orders["orders"]] == [(placed.order_id, 500)]
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in statement["transactions"]] == [
        ("use", -500, 500),
        ("charge", 1_000, 1_000),
    ]
    assert table.exit_code == 0, explain(table)
    assert "balance after" in table.stdout
    assert "more: --before" in table.stdout
    assert unknown.exit_code == 1, explain(unknown)
    assert "unknown_user" in unknown.stderr
