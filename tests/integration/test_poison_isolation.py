"""No record stops its partition (real Kafka, PostgreSQL and Redis).

- A 900,000-byte value (the broker takes up to 1 MiB) makes a dead letter cut to fit,
  once, and the commands behind it are applied, across a restart of the service.
- A batch that fails on every attempt because of one record (a database error that no
  savepoint contains, or one inside a command's savepoint) ends with that record as a
  processing_failed dead letter, its command_id not spent, and the rest applied.
"""

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import (
    GUARANTEED_WHOLE_PAYLOAD_BYTES,
    DeadLetter,
    DeadLetterReason,
    dead_letter_id,
)
from shopflow.contracts.events import PointsCharged
from shopflow.contracts.topics import POINTS_CHARGE, Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.dead_letter_store import DeadLetterStore
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from shopflow.testing.session import provisioned, running
from tests.support.database import balance_of, ledger_rows, transactions_of, user_in_database
from tests.support.ids import new_command_id
from tests.support.service import isolated

BIG = 900_000


def _value_of(command: ChargePoints) -> bytes:
    return command.model_dump_json().encode()


async def _assert_each_answered_once(client: ShopflowClient, commands: list[ChargePoints]) -> None:
    for command in commands:
        results = await client.wait_for_results(command.command_id, timeout=60)
        assert {r.event_id for r in results} == {results[0].event_id}, command.command_id
        assert isinstance(results[0], PointsCharged)


@pytest.fixture
async def own_topics(test_settings: Settings) -> Settings:
    settings = isolated(test_settings, "poison")
    await provisioned(settings)
    return settings


async def test_a_900000_byte_record_is_cut_once_and_stops_nothing_across_a_restart(
    own_topics: Settings, engine: AsyncEngine
) -> None:
    settings = own_topics
    user_id = await user_in_database(engine)
    topic = Topics(settings.topic_prefix).name(POINTS_CHARGE)
    charges = [
        ChargePoints(command_id=new_command_id("behind-big"), user_id=user_id, amount=i + 1)
        for i in range(60)
    ]
    prefix = _value_of(charges[0])[:-1] + b', "padding": "'
    big = prefix + b"x" * (BIG - len(prefix) - 2) + b'"}'
    assert len(big) == BIG

    async with ShopflowClient(
        kafka_connection(settings, OPS),
        topics=Topics(settings.topic_prefix),
        max_request_size=2 * 1024 * 1024,
    ) as client:
        for command in charges[:20]:
            await client.send(command)
        placed = await client.send_raw(topic, str(user_id).encode(), big)
        for command in charges[20:40]:
            await client.send(command)
        expected_id = dead_letter_id(topic, placed.partition, placed.offset)

        async with running(settings):
            await client.wait_for_dead_letter(lambda d: d.dead_letter_id == expected_id)
        # The service is down; more commands arrive on the same partition meanwhile.
        for command in charges[40:]:
            await client.send(command)
        async with running(settings):
            await _assert_each_answered_once(client, charges)
            await asyncio.sleep(1.0)  # room for any redelivered dead letter to arrive

        copies = [d for d in client.dead_letters if d.dead_letter_id == expected_id]
        others = [d for d in client.dead_letters if d.dead_letter_id != expected_id]

    assert 1 <= len(copies) <= 2, "a redelivery republishes the same dead letter, once"
    assert all(copy == copies[0] for copy in copies)
    assert others == []
    letter = copies[0]
    assert letter.reason is DeadLetterReason.TOO_LARGE
    assert (letter.source_topic, letter.partition, letter.offset) == (
        topic,
        placed.partition,
        placed.offset,
    )
    assert letter.payload_truncated
    assert letter.payload_size == BIG
    assert letter.payload_sha256 == hashlib.sha256(big).hexdigest()
    kept_prefix = base64.b64decode(letter.payload_base64)
    assert GUARANTEED_WHOLE_PAYLOAD_BYTES < len(kept_prefix) < BIG
    assert big.startswith(kept_prefix)
    # The whole original is kept by the service, byte for byte.
    async with engine.connect() as connection:
        kept = await DeadLetterStore(connection).kept_record(expected_id)
    assert kept is not None
    assert kept.value == big
    assert kept.key == str(user_id).encode()
    assert await balance_of(engine, user_id) == sum(range(1, 61))


_POISON_FUNCTION = """
CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'injected poison for %', NEW.command_id;
END $$ LANGUAGE plpgsql"""

# Each fails on every attempt, for one command_id pattern only, so other tests go on.
_POISON_TRIGGERS = {
    # Raised at COMMIT: no savepoint contains it, the whole transaction fails.
    "at_commit": (
        "poison-commit",
        """CREATE CONSTRAINT TRIGGER test_poison_at_commit AFTER INSERT ON point_transactions
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
           WHEN (NEW.command_id LIKE 'poison-commit-%') EXECUTE FUNCTION test_poison()""",
    ),
    # Raised by the command's own statement: the set fails, then the command alone.
    "in_its_statement": (
        "poison-row",
        """CREATE TRIGGER test_poison_in_statement BEFORE INSERT ON point_transactions
           FOR EACH ROW WHEN (NEW.command_id LIKE 'poison-row-%')
           EXECUTE FUNCTION test_poison()""",
    ),
}


@pytest.fixture
async def poison_triggers(owner_engine: AsyncEngine) -> AsyncIterator[None]:
    names = ["test_poison_at_commit", "test_poison_in_statement"]
    async with owner_engine.begin() as connection:
        await connection.execute(text(_POISON_FUNCTION))
        for name in names:
            await connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON point_transactions"))
        for _, trigger in _POISON_TRIGGERS.values():
            await connection.execute(text(trigger))
    yield
    async with owner_engine.begin() as connection:
        for name in names:
            await connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON point_transactions"))


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"topic": POINTS_CHARGE}) or 0.0


@pytest.mark.parametrize("where", sorted(_POISON_TRIGGERS))
@pytest.mark.usefixtures("poison_triggers")
async def test_a_batch_failing_for_good_because_of_one_record_isolates_it(
    where: str, own_topics: Settings, engine: AsyncEngine
) -> None:
    settings = own_topics
    label, _ = _POISON_TRIGGERS[where]
    users = [await user_in_database(engine) for _ in range(6)]
    charges = [
        ChargePoints(command_id=new_command_id("beside-poison"), user_id=users[i % 6], amount=10)
        for i in range(40)
    ]
    poison = ChargePoints(command_id=new_command_id(label), user_id=users[2], amount=1000)
    batch = [*charges[:17], poison, *charges[17:]]
    isolations_before = _counter("shopflow_batch_isolations_total")
    poison_before = _counter("shopflow_poison_records_total")

    async with ShopflowClient(
        kafka_connection(settings, OPS), topics=Topics(settings.topic_prefix)
    ) as client:
        # On the topic before the service starts, so that they arrive as one batch.
        for command in batch:
            await client.send(command)
        async with running(settings):
            await _assert_each_answered_once(client, charges)
            letter: DeadLetter = await client.wait_for_dead_letter(
                lambda d: base64.b64decode(d.payload_base64) == _value_of(poison)
            )
        assert client.results(poison.command_id) == []

    assert letter.reason is DeadLetterReason.PROCESSING_FAILED
    assert f"injected poison for {poison.command_id}" in letter.error
    assert "applying" in letter.error
    assert json.loads(base64.b64decode(letter.payload_base64))["command_id"] == poison.command_id
    assert await ledger_rows(engine, poison.command_id) == 0, "its command_id is not spent"
    for user_id in users:
        expected = 10 * sum(1 for c in charges if c.user_id == user_id)
        assert await balance_of(engine, user_id) == expected
    assert poison.command_id not in {t[2] for t in await transactions_of(engine, users[2])}
    assert _counter("shopflow_batch_isolations_total") > isolations_before
    assert _counter("shopflow_poison_records_total") == poison_before + 1
