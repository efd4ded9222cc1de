"""Bad input becomes a dead letter with its reason, its coordinates, its id derived from
them and its original bytes (kept in PostgreSQL too), and the next command on the same
partition is still applied."""

import base64
import hashlib
import json

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import DeadLetterReason, dead_letter_id
from shopflow.contracts.events import PointsCharged
from shopflow.contracts.limits import MAX_MESSAGE_BYTES
from shopflow.persistence.dead_letter_store import DeadLetterStore
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support.database import dead_letter_rows
from tests.support.ids import new_command_id
from tests.support.service import registered_user


def _charge_json(user_id: int, **overrides: object) -> bytes:
    document: dict[str, object] = {
        "command_id": new_command_id("bad"),
        "user_id": user_id,
        "amount": 10,
    }
    document.update(overrides)
    return json.dumps(document).encode()


BAD_MESSAGES = {
    "amount_above_bound": DeadLetterReason.INVALID_MESSAGE,
    "amount_zero": DeadLetterReason.INVALID_MESSAGE,
    "amount_as_string": DeadLetterReason.INVALID_MESSAGE,
    "amount_as_float": DeadLetterReason.INVALID_MESSAGE,
    "unknown_field": DeadLetterReason.INVALID_MESSAGE,
    "bad_command_id": DeadLetterReason.INVALID_MESSAGE,
    "not_json": DeadLetterReason.INVALID_JSON,
    "json_array": DeadLetterReason.INVALID_JSON,
    "too_large": DeadLetterReason.TOO_LARGE,
    "key_mismatch": DeadLetterReason.KEY_MISMATCH,
}


def _bad_value(case: str, user_id: int) -> bytes:
    match case:
        case "amount_above_bound":
            return _charge_json(user_id, amount=10**9 + 1)
        case "amount_zero":
            return _charge_json(user_id, amount=0)
        case "amount_as_string":
            return _charge_json(user_id, amount="10")
        case "amount_as_float":
            return _charge_json(user_id, amount=10.0)
        case "unknown_field":
            return _charge_json(user_id, amout=10)
        case "bad_command_id":
            return _charge_json(user_id, command_id="has spaces")
        case "not_json":
            return b"{not json"
        case "json_array":
            return b"[1, 2, 3]"
        case "too_large":
            return _charge_json(user_id, padding="x" * MAX_MESSAGE_BYTES)
        case "key_mismatch":
            return _charge_json(user_id + 1)  # sent under user_id's key
    raise AssertionError(case)


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
async def test_bad_message_is_dead_lettered_and_the_next_command_on_its_partition_applies(
    case: str, client: ShopflowClient, test_settings: Settings
) -> None:
    user_id = await registered_user(client)
    reason = BAD_MESSAGES[case]
    topic = f"{test_settings.topic_prefix}shop.points.charge"
    value = _bad_value(case, user_id)
    # The valid command behind it has the same key, so both land on one partition.
    key = str(user_id).encode()
    valid = ChargePoints(command_id=new_command_id("after-bad"), user_id=user_id, amount=5)

    placed = await client.send_raw(topic, key, value)
    event = await client.send_and_wait(valid)

    expected_id = dead_letter_id(topic, placed.partition, placed.offset)
    dead = await client.wait_for_dead_letter(lambda d: d.dead_letter_id == expected_id)
    assert dead.reason is reason
    assert (dead.source_topic, dead.partition, dead.offset) == (
        topic,
        placed.partition,
        placed.offset,
    )
    assert dead.key == str(user_id)
    assert dead.error
    assert base64.b64decode(dead.payload_base64) == value
    assert not dead.payload_truncated
    assert dead.payload_size == len(value)
    assert dead.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert isinstance(event, PointsCharged)
    assert event.balance == 5


async def test_dead_letter_records_where_the_message_was_and_keeps_it(
    client: ShopflowClient, test_settings: Settings, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    topic = f"{test_settings.topic_prefix}shop.points.charge"
    value = b"\xff\xfe not utf-8"

    placed = await client.send_raw(topic, str(user_id).encode(), value)
    dead = await client.wait_for_dead_letter(lambda d: base64.b64decode(d.payload_base64) == value)

    assert dead.reason is DeadLetterReason.INVALID_JSON
    assert (dead.partition, dead.offset) == (placed.partition, placed.offset)
    assert dead.dead_letter_id == dead_letter_id(topic, placed.partition, placed.offset)
    assert dead.received_at.tzinfo is not None
    async with engine.connect() as connection:
        kept = await DeadLetterStore(connection).kept_record(dead.dead_letter_id)
    assert kept is not None
    assert (kept.key, kept.value) == (str(user_id).encode(), value)
    # The row was found by its id, which only hashes the coordinates: its own partition
    # and offset columns are checked here, against where Kafka put the record.
    recorded = await dead_letter_rows(engine, topic)
    assert recorded.get((placed.partition, placed.offset)) == DeadLetterReason.INVALID_JSON.value
