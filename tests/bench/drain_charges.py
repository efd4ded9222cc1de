"""Benchmark: how fast one worker process drains ChargePoints already on the topic.

    make bench                      # 10,000 commands over 1,000 users
    .venv/bin/python -m tests.bench.drain_charges --commands 20000 --users 2000

Uses the servers of `make up` and the default database, on topics of its own (a fresh
prefix, deleted afterwards). Users are created with SQL. The commands are produced
first, then a `shopflow worker` subprocess starts and the clock runs from its first
result to its last; the script checks that every command got exactly one PointsCharged
and that the balances grew by exactly the amounts sent.
"""

import argparse
import asyncio
import os
import secrets
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, select

from contracts.commands import ChargePoints
from contracts.events import PointsCharged, parse_event
from contracts.topics import POINTS_CHARGE, POINTS_EVENTS, Topics
from persistence.database import create_engine
from persistence.migrate import upgrade_to_head
from persistence.tables import point_balances, users
from producers.client import topic_partitions
from shopflow.kafka_admin import ensure_topics
from shopflow.settings import Settings


async def run(commands: int, user_count: int, amount: int) -> None:
    run_id = secrets.token_hex(3)
    base = Settings()
    settings = base.model_copy(
        update={"topic_prefix": f"bench-{run_id}.", "consumer_group": f"bench-{run_id}"}
    )
    topics = Topics(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    await upgrade_to_head(engine)
    first_user = secrets.randbelow(2**60) + 1
    user_ids = [first_user + i for i in range(user_count)]
    async with engine.begin() as connection:
        await connection.execute(insert(users), [{"user_id": u, "name": "bench"} for u in user_ids])
        await connection.execute(
            insert(point_balances), [{"user_id": u, "balance": 0} for u in user_ids]
        )
    await ensure_topics(settings)

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    pending = []
    for i in range(commands):
        user_id = user_ids[i % user_count]
        command = ChargePoints(command_id=f"bench-{run_id}-{i}", user_id=user_id, amount=amount)
        pending.append(
            await producer.send(
                topics.name(POINTS_CHARGE),
                command.model_dump_json().encode(),
                key=str(user_id).encode(),
            )
        )
    await asyncio.gather(*pending)
    result_topic = topics.name(POINTS_EVENTS)
    partitions = [
        TopicPartition(result_topic, p) for p in await topic_partitions(producer, result_topic)
    ]
    await producer.stop()
    print(f"produced {commands} ChargePoints for {user_count} users")

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)

    env = {
        **os.environ,
        "SHOPFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "SHOPFLOW_CONSUMER_GROUP": settings.consumer_group,
    }
    started = time.perf_counter()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopflow", "worker", "--log-level", "warning", env=env
    )
    seen: dict[str, int] = {}
    charged = 0
    first_at = last_at = 0.0
    try:
        async with asyncio.timeout(600):
            while len(seen) < commands:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        assert record.value is not None
                        event = parse_event(record.value)
                        seen[event.command_id] = seen.get(event.command_id, 0) + 1
                        charged += isinstance(event, PointsCharged)
                        if not first_at:
                            first_at = time.perf_counter()
                last_at = time.perf_counter()
    finally:
        worker.terminate()
        await worker.wait()
        await consumer.stop()

    async with engine.connect() as connection:
        total = (
            await connection.execute(
                select(func.sum(point_balances.c.balance)).where(
                    point_balances.c.user_id.in_(user_ids)
                )
            )
        ).scalar_one()
    await engine.dispose()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.delete_topics(
        [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    )
    await admin.close()

    drain = last_at - first_at
    print(f"worker start to first result: {first_at - started:.2f} s")
    print(f"drained {commands} commands in {drain:.2f} s: {commands / drain:,.0f} commands/s")
    print(
        f"results: {len(seen)} commands answered, {charged} PointsCharged, "
        f"{sum(seen.values()) - len(seen)} duplicates"
    )
    assert charged == commands, "every command must be charged once"
    assert total == commands * amount, f"balances grew by {total}, expected {commands * amount}"
    print("checks: every command charged exactly once; balances match")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--amount", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.commands, args.users, args.amount))


if __name__ == "__main__":
    main()
