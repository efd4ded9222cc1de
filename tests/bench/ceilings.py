"""Ceilings measured in the same run as shopflow's figures, so that they can be given as
ratios on a noisy machine (issue: performance within reach of what the machine allows).

`bare_drain`: plain aiokafka, no framework, no database: consume the same records in
batches (`getmany`, up to 500), produce one result of about 200 bytes for each, wait for
every acknowledgement, commit the offsets, next batch. What shopflow does around its
database work, at its cheapest.
"""

import asyncio
import secrets
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_RESULT = b'{"event_id":"%s","type":"PointsCharged","command_id":"%s","balance":1}' % (
    b"0" * 36,
    b"x" * 40,
)


async def bare_loop(
    bootstrap: str,
    source: str,
    target: str,
    *,
    result_of: Callable[[bytes], bytes],
    done: Callable[[int], bool],
    poll_ms: int,
) -> float:
    """The bare loop: consume `source` from the beginning in batches (a group of its own),
    produce `result_of(value)` to `target` for each record, wait for every
    acknowledgement, commit, until `done(records so far)`. Returns when the first batch
    arrived (`time.perf_counter()`)."""
    # The producer configured as shopflow's result sink is (idempotent, acks=all, no
    # linger), so the two differ only in what shopflow does besides.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{secrets.token_hex(3)}",
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


async def bare_drain(bootstrap: str, topic: str, count: int, partitions: int) -> float:
    """Records per second of `bare_loop` over `count` records already on `topic`."""
    scratch = f"{topic}.ceiling-{secrets.token_hex(3)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(scratch, partitions, 1)])
    try:
        async with asyncio.timeout(300):
            first_at = await bare_loop(
                bootstrap,
                topic,
                scratch,
                result_of=lambda _: _RESULT,
                done=lambda handled: handled >= count,
                poll_ms=100,
            )
        return count / (time.perf_counter() - first_at)
    finally:
        await admin.delete_topics([scratch])
        await admin.close()
