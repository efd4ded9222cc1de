"""Ceilings measured in the same run as shopflow's figures, so that they can be given as
ratios on a noisy machine (issue: performance within reach of what the machine allows).

`bare_drain`: plain aiokafka, no framework, no database: consume the same records in
batches (`getmany`, up to 500), produce one result of about 200 bytes for each, wait for
every acknowledgement, commit the offsets, next batch. What shopflow does around its
database work, at its cheapest. It authenticates as the service's principal and is
authorized by the same ACLs (on topics of its own behind the run's prefix), so the ratio
compares like with like under access control.
"""

import asyncio
import secrets
import time
from collections.abc import Callable

from shopflow.contracts.principals import SERVICE
from shopflow.contracts.routes import CommandRoute
from shopflow.contracts.topics import Topics
from shopflow.kafka_access import kafka_connection
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings
from tests.support.scratch import side_topics

_RESULT = b'{"event_id":"%s","type":"PointsCharged","command_id":"%s","balance":1}' % (
    b"0" * 36,
    b"x" * 40,
)


async def bare_loop(
    kafka: KafkaConnection,
    source: str,
    target: str,
    *,
    group: str,
    result_of: Callable[[bytes], bytes],
    done: Callable[[int], bool],
    poll_ms: int,
) -> float:
    """The bare loop, as `kafka`'s principal (the service's, so that the broker checks the
    same ACLs as for shopflow): consume `source` from the beginning in batches (in the
    consumer group `group`), produce `result_of(value)` to `target` for each record, wait
    for every acknowledgement, commit, until `done(records so far)`. Returns when the
    first batch arrived (`time.perf_counter()`)."""
    # The producer configured as shopflow's result sink is (idempotent, acks=all, no
    # linger), so the two differ only in what shopflow does besides.
    producer = kafka.producer(enable_idempotence=True, acks="all", linger_ms=0)
    consumer = kafka.consumer(
        source,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    handled = 0
    first_at = 0.0
    try:
        while not done(handled):
            batches = await consumer.getmany(timeout_ms=poll_ms, max_records=500)
            if not batches:
                continue
            first_at = first_at or time.perf_counter()
            pending = [
                await producer.send(target, result_of(record.value or b""), key=record.key)
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*pending)
            await consumer.commit()
            handled += len(pending)
        return first_at
    finally:
        await consumer.stop()
        await producer.stop()


async def bare_drain(settings: Settings, route: CommandRoute, count: int) -> float:
    """Records per second of `bare_loop` over the `count` records already on the run's
    `route` topic, as the service's principal, producing to the route's result topic
    behind a prefix of its own (`scratch.side_topics`: the contract's ACLs on it)."""
    source = Topics(settings.topic_prefix).name(route.topic)
    side = {route.result_topic: settings.command_partitions}
    async with side_topics(settings, "ceiling", side) as ceiling:
        async with asyncio.timeout(300):
            first_at = await bare_loop(
                kafka_connection(settings, SERVICE),
                source,
                ceiling.name(route.result_topic),
                group=f"{settings.consumer_group}.bare-{secrets.token_hex(3)}",
                result_of=lambda _: _RESULT,
                done=lambda handled: handled >= count,
                poll_ms=100,
            )
        return count / (time.perf_counter() - first_at)
