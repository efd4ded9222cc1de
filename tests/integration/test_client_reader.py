"""ShopflowClient's reader outlives records it cannot read on the topics it watches.

Each test starts a client of its own (the session's `client` fixture is shared, and a
dead reader would time out every later test), writes one unreadable record onto every
partition of the result topic of RegisterUser, then sends a real RegisterUser through the
running service: its result must still come back, and the skipped records be logged."""

import logging
from collections.abc import AsyncIterator

import pytest

from shopflow.contracts.commands import RegisterUser
from shopflow.contracts.events import UserRegistered
from shopflow.contracts.topics import USERS_EVENTS, Topics
from shopflow.kafka_access import OPS, SERVICE, kafka_connection
from shopflow.producers.client import ShopflowClient
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from tests.support.ids import new_command_id, new_entity_id

UNREADABLE = {
    "not-json": b"not json",
    "empty-object": b"{}",
    "tombstone": None,
    # json.loads raises RecursionError (not a ValueError) on nesting this deep.
    "deep-nesting": b"[" * 100_000,
    "other-event-type": b'{"type": "SomethingElse", "command_id": "x"}',
}


@pytest.fixture
async def own_client(service: Runtime, test_settings: Settings) -> AsyncIterator[ShopflowClient]:
    async with ShopflowClient(
        kafka_connection(test_settings, OPS), topics=Topics(test_settings.topic_prefix)
    ) as started:
        yield started


@pytest.mark.parametrize("kind", list(UNREADABLE))
async def test_an_unreadable_result_record_is_skipped_and_later_results_arrive(
    own_client: ShopflowClient,
    test_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    topic = Topics(test_settings.topic_prefix).name(USERS_EVENTS)
    command = RegisterUser(command_id=new_command_id("reader"), user_id=new_entity_id(), name="R")

    # Written as the service: no other principal may write a result topic.
    forger = kafka_connection(test_settings, SERVICE).producer()
    await forger.start()
    with caplog.at_level(logging.WARNING, logger="shopflow.producers.client"):
        try:
            written = [
                await forger.send_and_wait(
                    topic, UNREADABLE[kind], key=b"garbage", partition=partition
                )
                for partition in range(test_settings.event_partitions)
            ]
        finally:
            await forger.stop()
        event = await own_client.send_and_wait(command, timeout=15)

    assert isinstance(event, UserRegistered)
    assert (event.command_id, event.user_id) == (command.command_id, command.user_id)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for metadata in written:
        where = f"skipped unreadable record {topic}[{metadata.partition}]@{metadata.offset}"
        assert any(w.startswith(where) for w in warnings), (where, warnings)
