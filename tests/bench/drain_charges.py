"""Benchmark: how fast one worker process drains commands already on their topic.

    make bench                                            # 10,000 ChargePoints, 1,000 users
    .venv/bin/python -m tests.bench.drain_charges --commands 20000 --users 2000
    .venv/bin/python -m tests.bench.drain_charges --kind orders --commands 5000

Uses the servers of `make up` and the default database, on topics of its own (a fresh
prefix, deleted afterwards). Users (and for orders, 100 products with ample stock)
are created with SQL, keeping the books consistent for `shopflow check`. The commands
are produced first, then a `shopflow worker` subprocess starts and the clock runs from
its first result to its last. The script then checks that every command was accepted
exactly once and that balances (and stock) moved by exactly what was sent, and measures
in the same run the ceiling of a bare aiokafka loop over the same records
(`tests.bench.ceilings`), printing shopflow's rate as a ratio of it.
"""

import argparse
import asyncio
import os
import random
import secrets
import signal
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.commands import ChargePoints, Command, OrderLine, PlaceOrder
from contracts.events import OrderPlaced, PointsCharged, parse_event
from contracts.topics import ROUTES_BY_TYPE, Topics
from persistence.database import create_engine
from persistence.migrate import upgrade_to_head
from persistence.tables import point_balances, point_transactions, products, users
from producers.client import topic_partitions
from shopflow.kafka_admin import ensure_topics
from shopflow.settings import Settings
from tests.bench.ceilings import bare_drain

ORDER_BALANCE = 10**12
PRODUCT_COUNT = 100
PRODUCT_STOCK = 10**9


async def seed(
    engine: AsyncEngine, user_ids: list[int], balance: int, product_ids: list[int]
) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(users), [{"user_id": u, "name": "bench"} for u in user_ids])
        await connection.execute(
            insert(point_balances), [{"user_id": u, "balance": balance} for u in user_ids]
        )
        if balance:
            await connection.execute(
                insert(point_transactions),
                [
                    {"user_id": u, "kind": "charge", "amount": balance, "command_id": "bench-seed"}
                    for u in user_ids
                ],
            )
        if product_ids:
            await connection.execute(
                insert(products),
                [
                    {"product_id": p, "name": "bench", "price": 1, "stock": PRODUCT_STOCK}
                    for p in product_ids
                ],
            )


def _commands(
    kind: str, count: int, run_id: str, user_ids: list[int], product_ids: list[int], amount: int
) -> list[Command]:
    rng = random.Random(11)
    if kind == "charges":
        return [
            ChargePoints(
                command_id=f"bench-{run_id}-{i}", user_id=user_ids[i % len(user_ids)], amount=amount
            )
            for i in range(count)
        ]
    return [
        PlaceOrder(
            command_id=f"bench-{run_id}-{i}",
            user_id=user_ids[i % len(user_ids)],
            items=[OrderLine(product_id=p, quantity=1) for p in rng.sample(product_ids, 2)],
        )
        for i in range(count)
    ]


async def run(kind: str, count: int, user_count: int, amount: int, profile: str | None) -> None:
    run_id = secrets.token_hex(3)
    settings = Settings().model_copy(
        update={"topic_prefix": f"bench-{run_id}.", "consumer_group": f"bench-{run_id}"}
    )
    topics = Topics(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    await upgrade_to_head(engine)
    first_id = secrets.randbelow(2**60) + 1
    user_ids = [first_id + i for i in range(user_count)]
    product_ids = [first_id + i for i in range(PRODUCT_COUNT)] if kind == "orders" else []
    await seed(engine, user_ids, ORDER_BALANCE if kind == "orders" else 0, product_ids)
    await ensure_topics(settings)
    commands = _commands(kind, count, run_id, user_ids, product_ids, amount)
    route = ROUTES_BY_TYPE[type(commands[0])]

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    pending = [
        await producer.send(
            topics.name(route.topic),
            command.model_dump_json(exclude_none=True).encode(),
            key=str(route.entity_id(command)).encode(),
        )
        for command in commands
    ]
    await asyncio.gather(*pending)
    result_topic = topics.name(route.result_topic)
    partitions = [
        TopicPartition(result_topic, p) for p in await topic_partitions(producer, result_topic)
    ]
    await producer.stop()
    print(f"produced {count} {route.type_name} for {user_count} users")

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
    command = [
        sys.executable,
        "-m",
        "shopflow",
        "worker",
        "--log-level",
        os.environ.get("BENCH_WORKER_LOG", "warning"),
    ]
    if profile:
        # py-spy samples the worker (100 Hz, idle frames included) into collapsed stacks.
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        command = [py_spy, "record", "--format", "raw", "-o", profile, "--", *command]
    worker = await asyncio.create_subprocess_exec(*command, env=env)
    seen: dict[str, int] = {}
    accepted = 0
    first_at = last_at = 0.0
    try:
        async with asyncio.timeout(600):
            while len(seen) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        assert record.value is not None
                        event = parse_event(record.value)
                        seen[event.command_id] = seen.get(event.command_id, 0) + 1
                        accepted += isinstance(event, PointsCharged | OrderPlaced)
                        if not first_at:
                            first_at = time.perf_counter()
                last_at = time.perf_counter()
    finally:
        if profile:
            os.kill(worker.pid, signal.SIGINT)  # py-spy writes its profile and stops the worker
        else:
            worker.terminate()
        await worker.wait()
        await consumer.stop()

    ceiling = await bare_drain(
        settings.kafka_bootstrap,
        topics.name(route.topic),
        count,
        settings.command_partitions,
    )

    async with engine.connect() as connection:
        balances = (
            await connection.execute(
                select(func.sum(point_balances.c.balance)).where(
                    point_balances.c.user_id.in_(user_ids)
                )
            )
        ).scalar_one()
        stock = (
            await connection.execute(
                select(func.sum(products.c.stock)).where(products.c.product_id.in_(product_ids))
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
    print(f"drained {count} commands in {drain:.2f} s: {count / drain:,.0f} commands/s")
    print(
        f"bare aiokafka consume + produce + commit per batch, same records, same run: "
        f"{ceiling:,.0f} records/s (shopflow = {count / drain / ceiling:.2f} of it)"
    )
    print(
        f"results: {len(seen)} commands answered, {accepted} accepted, "
        f"{sum(seen.values()) - len(seen)} duplicates"
    )
    assert accepted == count, "every command must be accepted exactly once"
    if kind == "charges":
        assert balances == count * amount, f"balances grew by {balances}"
    else:
        assert balances == user_count * ORDER_BALANCE - 2 * count, "points deducted"
        assert stock == PRODUCT_COUNT * PRODUCT_STOCK - 2 * count, "stock taken"
    print("checks: every command accepted exactly once; balances (and stock) match")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=["charges", "orders"], default="charges")
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--amount", type=int, default=3)
    parser.add_argument(
        "--profile", metavar="PATH", help="sample the worker with py-spy into PATH (collapsed)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.kind, args.commands, args.users, args.amount, args.profile))


if __name__ == "__main__":
    main()
