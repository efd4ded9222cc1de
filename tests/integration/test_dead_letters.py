"""Bad input becomes a dead letter with its reason and original bytes, and the next
command on the same partition is still applied."""

import base64
import json

import pytest

from contracts.commands import ChargePoints
from contracts.dead_letters import DeadLetter, DeadLetterReason
from contracts.events import PointsCharged
from contracts.limits import MAX_MESSAGE_BYTES
from producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.conftest import new_command_id
from tests.integration.helpers import registered_user


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

    await client.send_raw(topic, key, value)
    event = await client.send_and_wait(valid)

    def is_ours(dead: DeadLetter) -> bool:
        return base64.b64decode(dead.payload_base64) == value

    dead = await client.wait_for_dead_letter(is_ours)
    assert dead.reason is reason
    assert dead.source_topic == topic
    assert dead.key == str(user_id)
    assert dead.error
    assert isinstance(event, PointsCharged)
    assert event.balance == 5


async def test_dead_letter_records_where_the_message_was(
    client: ShopflowClient, test_settings: Settings
) -> None:
    user_id = await registered_user(client)
    topic = f"{test_settings.topic_prefix}shop.points.charge"
    value = b"\xff\xfe not utf-8"

    await client.send_raw(topic, str(user_id).encode(), value)
    dead = await client.wait_for_dead_letter(lambda d: base64.b64decode(d.payload_base64) == value)

    assert dead.reason is DeadLetterReason.INVALID_JSON
    assert dead.partition >= 0
    assert dead.offset >= 0
    assert dead.received_at.tzinfo is not None
