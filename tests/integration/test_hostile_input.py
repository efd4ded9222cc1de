"""Property-based hostile input against the running service (real Kafka, PostgreSQL and
Redis): whatever the bytes, each hostile record gets exactly one dead letter with the
right reason and a stable id, and the valid command that follows it on the same
partition gets its one result.

Each example sends a list of hostile records drawn by `tests.support.hostile` (wrong types,
strings and floats for numbers, huge integers, unknown and duplicate fields, missing or
malformed command_id, invalid UTF-8, other encodings, BOM, deep nesting, null, wrong and
non-canonical keys, values from empty up to the broker's limit), each followed by a
valid ChargePoints on the same partition. `SHOPFLOW_HOSTILE_RECORDS` (default 240) sets
how many hostile records the test sends in all; the figures are printed (`pytest -s`).
"""

import asyncio
import base64
import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import GUARANTEED_WHOLE_PAYLOAD_BYTES, dead_letter_id
from shopflow.contracts.events import PointsCharged
from shopflow.contracts.topics import POINTS_CHARGE, Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.dead_letter_store import DeadLetterStore
from shopflow.persistence.tables import point_transactions
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support.database import balance_of
from tests.support.hostile import Hostile, hostile_charges
from tests.support.ids import new_command_id
from tests.support.service import funded_users

PER_EXAMPLE = 40
TOTAL = int(os.environ.get("SHOPFLOW_HOSTILE_RECORDS", "240"))
POOL = 12


@dataclass
class Tally:
    """What the examples sent and got, for the figures printed at the end."""

    hostile: int = 0
    valid: int = 0
    dead_letter_messages: int = 0
    longest_wait: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)


TALLY = Tally()


@pytest.fixture(scope="module")
async def hostile_client(test_settings: Settings) -> AsyncIterator[ShopflowClient]:
    # Room for values up to the broker's own limit (the default client stops at 1 MiB).
    async with ShopflowClient(
        kafka_connection(test_settings, OPS),
        topics=Topics(test_settings.topic_prefix),
        max_request_size=2 * 1024 * 1024,
    ) as started:
        yield started


@pytest.fixture(scope="module")
async def pool(client: ShopflowClient) -> dict[int, int]:
    """Users the examples charge, with the balance each must have."""
    return dict.fromkeys(await funded_users(client, POOL, 1), 1)


def _partition_of(key: bytes, partitions: int) -> int:
    # Kafka's default partitioner (murmur2 of the key), as the producer applies it.
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@settings(
    max_examples=max(1, TOTAL // PER_EXAMPLE),
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(
    draws=st.lists(
        st.tuples(st.integers(min_value=0, max_value=POOL - 1), st.data()),
        min_size=PER_EXAMPLE,
        max_size=PER_EXAMPLE,
    )
)
async def test_hostile_records_get_one_dead_letter_each_and_stall_nothing(
    draws: list[tuple[int, st.DataObject]],
    hostile_client: ShopflowClient,
    pool: dict[int, int],
    engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    client = hostile_client
    users = sorted(pool)
    topic = Topics(test_settings.topic_prefix).name(POINTS_CHARGE)
    sent: list[tuple[Hostile, int, int, ChargePoints, float]] = []
    valid_coordinates: set[tuple[int, int]] = set()
    loop_time = asyncio.get_running_loop().time

    # Given hostile records, each followed on its partition by a valid charge.
    for index, data in draws:
        user_id = users[index]
        hostile = data.draw(hostile_charges(user_id))
        key = str(user_id).encode()
        partition = _partition_of(key, test_settings.command_partitions)
        placed = await client.send_raw(topic, hostile.key, hostile.value, partition=partition)
        assert placed.partition == partition
        amount = data.draw(st.integers(min_value=1, max_value=1000))
        valid = ChargePoints(
            command_id=new_command_id("after-hostile"), user_id=user_id, amount=amount
        )
        sent_at = loop_time()
        behind = await client.send_raw(topic, key, valid.model_dump_json().encode())
        assert behind.partition == partition
        valid_coordinates.add((behind.partition, behind.offset))
        pool[user_id] += amount
        sent.append((hostile, placed.partition, placed.offset, valid, sent_at))

    # Then every valid command gets its one result, and no partition stood still.
    for _, _, _, valid, sent_at in sent:
        results = await client.wait_for_results(valid.command_id, timeout=60)
        assert {r.event_id for r in results} == {results[0].event_id}
        assert isinstance(results[0], PointsCharged)
        seen_at = client.first_seen_at(valid.command_id)
        assert seen_at is not None
        TALLY.longest_wait = max(TALLY.longest_wait, seen_at - sent_at)

    # And every hostile record has exactly one dead letter, with the right reason.
    expected = {dead_letter_id(topic, p, o): (h, p, o) for h, p, o, _, _ in sent}
    await client.wait_for_dead_letter(
        lambda _: expected.keys() <= {d.dead_letter_id for d in client.dead_letters},
        timeout=60,
    )
    ours = [d for d in client.dead_letters if d.source_topic == topic]
    copies = Counter(d.dead_letter_id for d in ours if d.dead_letter_id in expected)
    for letter in ours:
        assert (letter.partition, letter.offset) not in valid_coordinates, "a valid command"
    for letter_id, (hostile, partition, offset) in expected.items():
        letters = [d for d in ours if d.dead_letter_id == letter_id]
        assert 1 <= len(letters) <= 2, (hostile.kind, len(letters))  # 2: a redelivered batch
        letter = letters[0]
        assert all(other == letter for other in letters)
        assert (letter.partition, letter.offset) == (partition, offset)
        assert letter.reason is hostile.reason, (hostile.kind, letter.error)
        value = hostile.value or b""
        kept = base64.b64decode(letter.payload_base64)
        assert letter.payload_size == len(value)
        assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
        if letter.payload_truncated:
            assert len(value) > GUARANTEED_WHOLE_PAYLOAD_BYTES
            assert value.startswith(kept)
            assert len(kept) < len(value)
            async with engine.connect() as connection:
                whole = await DeadLetterStore(connection).kept_record(letter_id)
            assert whole is not None
            assert (whole.value or b"") == value
        else:
            assert kept == value, hostile.kind
        TALLY.kinds[hostile.kind] += 1

    # Balances are exact: every valid charge applied once, no hostile one at all.
    for user_id, balance in pool.items():
        assert await balance_of(engine, user_id) == balance
    valid_ids = [v.command_id for _, _, _, v, _ in sent]
    async with engine.connect() as connection:
        applied = Counter(
            row.command_id
            for row in await connection.execute(
                select(point_transactions.c.command_id).where(
                    point_transactions.c.command_id.in_(valid_ids)
                )
            )
        )
    assert applied == Counter(valid_ids), "each valid command applied exactly once"
    TALLY.hostile += len(sent)
    TALLY.valid += len(sent)
    TALLY.dead_letter_messages += sum(copies.values())
    print(
        f"\nhostile input so far: {TALLY.hostile} hostile records sent, "
        f"{TALLY.dead_letter_messages} dead-letter messages for them "
        f"({len(TALLY.kinds)} kinds), {TALLY.valid} valid commands, each applied and "
        f"answered once (0 lost, 0 twice); longest wait for a result "
        f"{TALLY.longest_wait:.3f} s"
    )
