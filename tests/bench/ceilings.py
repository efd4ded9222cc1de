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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_RESULT = b'{"event_id":"%s","type":"PointsCharged","command_id":"%s","balance":1}' % (
    b"0" * 36,
    b"x" * 40,
)


async def bare_drain(bootstrap: str, topic: str, count: int, partitions: int) -> float:
    """Records per second for a bare consume + produce + commit loop over `count`
    records already on `topic` (read from the beginning, in a group of its own)."""
    scratch = f"{topic}.ceiling-{secrets.token_hex(3)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(scratch, partitions, 1)])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"ceiling-{secrets.token_hex(3)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    done = 0
    first_at = 0.0
    try:
        async with asyncio.timeout(300):
            while done < count:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                if not batches:
                    continue
                if not first_at:
                    first_at = time.perf_counter()
                pending = [
                    await producer.send(scratch, _RESULT, key=record.key)
                    for records in batches.values()
                    for record in records
                ]
                await asyncio.gather(*pending)
                await consumer.commit()
                done += len(pending)
        return count / (time.perf_counter() - first_at)
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([scratch])
        await admin.close()
