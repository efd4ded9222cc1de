"""Benchmark: how fast shopflow's worker processes drain commands already on their topics.

    .venv/bin/python -m tests.bench.drain                       # 20,000 ChargePoints
    .venv/bin/python -m tests.bench.drain --kind orders --commands 10000
    .venv/bin/python -m tests.bench.drain --kind mix --workers 2
    .venv/bin/python -m tests.bench.drain --kind cancels --commands 10000
    .venv/bin/python -m tests.bench.drain --profile /tmp/worker.txt   # py-spy, collapsed

Kinds: `charges`, `orders` (two lines each), `register`, `upsert`, `add-item`,
`remove-item`, `cancels` (CancelOrder of orders seeded placed, two lines each), and `mix`
(50 % AddCartItem, 25 % ChargePoints, 25 % PlaceOrder).

Uses the servers of `make up` and the default database, on topics of its own (a fresh
prefix, created with the contract's ACLs as the Kafka admin, deleted afterwards). The
commands are produced as `shopflow-ops` (it writes every command topic), the results read
as `shop-reader`; the worker is the service's principal. What the commands need (users,
balances, products with ample stock, cart lines, the placed orders to cancel with their
payments and points used: `tests.bench.order_books`) is created with SQL first, keeping
the books consistent for `shopflow check`. The commands are produced, then the `shopflow
worker` subprocess starts (several workers start first and are given 6 s to join their
groups, and the commands are produced then), and the clock runs from the first result to
the last. The script checks that every command was accepted exactly once and that balances,
stock and carts moved by exactly what was sent (for cancels: by the orders' refunds, and
each order has its one refund of its payment); for a single-topic kind it then
measures, in the same run, a bare aiokafka loop over the same records
(`tests.bench.ceilings`) and gives shopflow's rate as a ratio of it. The workers'
resident memory is read just before they stop.
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import TopicPartition
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    Command,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from shopflow.contracts.events import parse_event
from shopflow.contracts.principals import OPS, READER
from shopflow.contracts.topics import ROUTES_BY_TYPE, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.tables import (
    cart_items,
    point_balances,
    point_transactions,
    products,
    refunds,
    users,
)
from shopflow.producers.client import topic_partitions
from shopflow.runtime import Consumers
from tests.bench.ceilings import bare_drain
from tests.bench.order_books import SeededOrder, seed_orders
from tests.support.scratch import (
    create_scratch_topics,
    delete_scratch_topics,
    scratch_settings,
    service_env,
)

KINDS = ("charges", "orders", "register", "upsert", "add-item", "remove-item", "cancels", "mix")
BALANCE = 10**12
PRODUCT_COUNT = 100
PRODUCT_STOCK = 10**9
CART_UNITS = 10**6
SETTLE_SECONDS = 6.0


@dataclass(frozen=True)
class Drain:
    kind: str
    workers: int
    consumers_per_topic: int  # in each worker (SHOPFLOW_CONSUMERS_PER_TOPIC)
    settled: bool  # the workers joined their groups before the commands were produced
    commands: int
    seconds: float
    per_second: float
    ceiling_per_second: float | None  # the bare aiokafka loop, same records, same run
    worker_rss_mb: float | None  # the largest worker's, at the end of the drain
    start_to_first_result_s: float
    # The workers ran the command consumers only, and one more worker the sales
    # aggregator (`shopflow worker --consumers sales`), started with them.
    sales_apart: bool = False

    @property
    def ratio(self) -> float | None:
        return None if not self.ceiling_per_second else self.per_second / self.ceiling_per_second

    def line(self) -> str:
        text = (
            f"{self.kind}, {self.workers} worker(s) x {self.consumers_per_topic} consumer(s)"
            f"{', the aggregator apart' if self.sales_apart else ''}"
            f"{', settled' if self.settled else ''}: {self.commands} commands in "
            f"{self.seconds:.2f} s = {self.per_second:,.0f}/s"
        )
        if self.ceiling_per_second:
            text += f"; bare loop {self.ceiling_per_second:,.0f}/s (ratio {self.ratio:.2f})"
        if self.worker_rss_mb:
            text += f"; worker RSS {self.worker_rss_mb:.0f} MB"
        return text


async def seed(
    engine: AsyncEngine,
    user_ids: list[int],
    balance: int,
    product_ids: list[int],
    cart_units: int = 0,
) -> None:
    """Users with `balance` points (and the charge that explains it), products with ample
    stock, and (`cart_units`) a cart line of every product for every user."""
    async with engine.begin() as connection:
        if user_ids:
            await connection.execute(
                insert(users), [{"user_id": u, "name": "bench"} for u in user_ids]
            )
            await connection.execute(
                insert(point_balances), [{"user_id": u, "balance": balance} for u in user_ids]
            )
        if user_ids and balance:
            await connection.execute(
                insert(point_transactions),
                [
                    {
                        "user_id": u,
                        "kind": "charge",
                        "amount": balance,
                        "balance_after": balance,
                        "command_id": "bench-seed",
                    }
                    for u in user_ids
                ],
            )
        if product_ids:
            await connection.execute(
                insert(products),
                [
                    {
                        "product_id": p,
                        "name": "bench",
                        "price": 1,
                        "stock": PRODUCT_STOCK,
                        "stock_added": PRODUCT_STOCK,
                    }
                    for p in product_ids
                ],
            )
        if cart_units:
            await connection.execute(
                insert(cart_items),
                [
                    {"user_id": u, "product_id": p, "quantity": cart_units}
                    for u in user_ids
                    for p in product_ids
                ],
            )


def commands_of(
    kind: str,
    count: int,
    run_id: str,
    user_ids: list[int],
    product_ids: list[int],
    orders: Sequence[SeededOrder] = (),
) -> list[Command]:
    """The `count` commands of `kind`; `cancels` cancels `orders`, the i-th command the
    i-th order (so a user's cancels come in the order its orders were placed)."""
    rng = random.Random(11)

    def make(i: int, what: str) -> Command:
        command_id = f"bench-{run_id}-{i}"
        user_id = user_ids[i % len(user_ids)]
        if what == "cancels":
            order = orders[i]
            return CancelOrder(
                command_id=command_id, user_id=order.user_id, order_id=order.order_id
            )
        if what == "charges":
            return ChargePoints(command_id=command_id, user_id=user_id, amount=3)
        if what == "orders":
            lines = [OrderLine(product_id=p, quantity=1) for p in rng.sample(product_ids, 2)]
            return PlaceOrder(command_id=command_id, user_id=user_id, items=lines)
        if what == "register":
            return RegisterUser(command_id=command_id, user_id=user_id, name="bench")
        if what == "upsert":
            product_id = product_ids[i % len(product_ids)]
            return UpsertProduct(
                command_id=command_id, product_id=product_id, name="bench", price=5, stock_added=1
            )
        product_id = rng.choice(product_ids)
        if what == "add-item":
            return AddCartItem(
                command_id=command_id, user_id=user_id, product_id=product_id, quantity=1
            )
        return RemoveCartItem(
            command_id=command_id, user_id=user_id, product_id=product_id, quantity=1
        )

    if kind != "mix":
        return [make(i, kind) for i in range(count)]
    share = ["add-item", "add-item", "charges", "orders"]
    return [make(i, share[i % 4]) for i in range(count)]


@dataclass(frozen=True)
class Shop:
    user_ids: list[int]
    product_ids: list[int]
    orders: tuple[SeededOrder, ...] = ()  # placed, to be cancelled (`cancels`)


async def _prepare(engine: AsyncEngine, kind: str, count: int, user_count: int) -> Shop:
    first_id = secrets.randbelow(2**60) + 1
    user_ids = [first_id + i for i in range(user_count if kind != "register" else count)]
    product_count = PRODUCT_COUNT if kind != "upsert" else 1_000
    product_ids = [first_id + i for i in range(product_count)]
    if kind == "register" or kind == "upsert":
        await seed(engine, [], 0, [])
    elif kind == "remove-item":
        # Each user's cart holds every product, so any removal of one unit succeeds.
        small = product_ids[:10]
        await seed(engine, user_ids, 0, small, cart_units=CART_UNITS)
        product_ids = small
    elif kind == "cancels":
        await seed(engine, user_ids, BALANCE, product_ids)
        # Command ids of the seeded orders' own: the run's first id is random.
        placed = await seed_orders(engine, f"bench-{first_id:x}", count, user_ids, product_ids)
        return Shop(user_ids, product_ids, tuple(placed))
    else:
        await seed(engine, user_ids, BALANCE, product_ids)
    return Shop(user_ids, product_ids)


async def totals(engine: AsyncEngine, shop: Shop) -> tuple[int, int, int]:
    async with engine.connect() as connection:
        balance = (
            await connection.execute(
                select(func.coalesce(func.sum(point_balances.c.balance), 0)).where(
                    point_balances.c.user_id.in_(shop.user_ids)
                )
            )
        ).scalar_one()
        stock = (
            await connection.execute(
                select(func.coalesce(func.sum(products.c.stock), 0)).where(
                    products.c.product_id.in_(shop.product_ids)
                )
            )
        ).scalar_one()
        in_carts = (
            await connection.execute(
                select(func.coalesce(func.sum(cart_items.c.quantity), 0)).where(
                    cart_items.c.user_id.in_(shop.user_ids)
                )
            )
        ).scalar_one()
    return int(balance), int(stock), int(in_carts)


def _expected_change(
    commands: list[Command], orders: Mapping[int, SeededOrder]
) -> tuple[int, int, int]:
    """How much the balances, the stock and the carts must move if every command is
    accepted once (registrations are checked by their answers alone); `orders` are the
    orders the cancels name, by id."""
    balance = stock = carts = 0
    for c in commands:
        if isinstance(c, CancelOrder):
            order = orders[c.order_id]
            balance += order.total  # the refund: every bench product costs 1 point
            stock += order.total  # its units back
        elif isinstance(c, ChargePoints):
            balance += c.amount
        elif isinstance(c, PlaceOrder):
            units = sum(line.quantity for line in c.items or ())
            balance -= units  # every bench product costs 1 point
            stock -= units
        elif isinstance(c, UpsertProduct):
            stock += c.stock_added
        elif isinstance(c, AddCartItem):
            carts += c.quantity
        elif isinstance(c, RemoveCartItem):
            carts -= c.quantity
    return balance, stock, carts


async def _refunded(engine: AsyncEngine, orders: Sequence[SeededOrder]) -> tuple[int, int]:
    """The number of refunds of the orders' payments, and their sum."""
    async with engine.connect() as connection:
        count, total = (
            await connection.execute(
                select(func.count(), func.coalesce(func.sum(refunds.c.amount), 0)).where(
                    refunds.c.payment_command_id.in_([o.command_id for o in orders])
                )
            )
        ).one()
    return int(count), int(total)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def run(
    kind: str,
    count: int,
    user_count: int = 2_000,
    *,
    workers: int = 1,
    profile: str | None = None,
    ceiling: bool = True,
    settle: bool = False,
    consumers_per_topic: int = 1,
    sales_apart: bool = False,
) -> Drain:
    settings = scratch_settings()
    run_id = settings.consumer_group
    topics = Topics(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    shop = await _prepare(engine, kind, count, user_count)
    before = await totals(engine, shop)
    await create_scratch_topics(settings)
    commands = commands_of(kind, count, run_id, shop.user_ids, shop.product_ids, shop.orders)
    routes = {ROUTES_BY_TYPE[type(c)] for c in commands}

    async def produce() -> list[TopicPartition]:
        producer = kafka_connection(settings, OPS).producer(enable_idempotence=True, linger_ms=5)
        await producer.start()
        pending = []
        for command in commands:
            route = ROUTES_BY_TYPE[type(command)]
            pending.append(
                await producer.send(
                    topics.name(route.topic),
                    command.model_dump_json(exclude_none=True).encode(),
                    key=str(route.entity_id(command)).encode(),
                )
            )
        await asyncio.gather(*pending)
        partitions = [
            TopicPartition(topic, p)
            for topic in sorted({topics.name(r.result_topic) for r in routes})
            for p in await topic_partitions(producer, topic)
        ]
        await producer.stop()
        print(f"produced {count} {kind} commands", flush=True)
        return partitions

    env = service_env(settings, SHOPFLOW_CONSUMERS_PER_TOPIC=str(consumers_per_topic))
    argv = [
        sys.executable,
        *("-m", "shopflow", "worker", "--log-level"),
        os.environ.get("BENCH_WORKER_LOG", "warning"),
    ]
    sales_argv = [*argv, "--consumers", Consumers.SALES.value]
    if sales_apart:
        argv += ["--consumers", Consumers.COMMANDS.value]
    if profile:
        # py-spy samples the (first) worker at 100 Hz into collapsed stacks.
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        argv = [py_spy, "record", "--idle", "--format", "raw", "-o", profile, "--", *argv]

    async def launch() -> list[asyncio.subprocess.Process]:
        launched = [await asyncio.create_subprocess_exec(*argv, env=env) for _ in range(workers)]
        if sales_apart:
            launched.append(await asyncio.create_subprocess_exec(*sales_argv, env=env))
        return launched

    started = time.perf_counter()
    if settle or workers > 1:
        # Several workers: started first, and given time to join their groups (each
        # joining consumer rebalances its group), so the drain measures them sharing
        # the partitions rather than a rebalance; the commands are produced then.
        processes = await launch()
        await asyncio.sleep(SETTLE_SECONDS)
        partitions = await produce()
    else:
        partitions = await produce()
        started = time.perf_counter()
        processes = await launch()
    consumer = kafka_connection(settings, READER).consumer()
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    wanted = {c.command_id for c in commands}
    seen: dict[str, int] = {}
    event_ids: dict[str, uuid.UUID] = {}
    accepted: set[str] = set()
    first_at = last_at = 0.0
    rss: list[float] = []
    try:
        async with asyncio.timeout(600):
            while len(seen) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        assert record.value is not None
                        event = parse_event(record.value)
                        if event.command_id not in wanted:
                            continue
                        seen[event.command_id] = seen.get(event.command_id, 0) + 1
                        first_event = event_ids.setdefault(event.command_id, event.event_id)
                        # A repeat (a batch redelivered after a rebalance) must be the
                        # same result: one outcome per command.
                        assert first_event == event.event_id, f"two results for {event}"
                        if "Rejected" not in type(event).__name__:
                            accepted.add(event.command_id)
                        first_at = first_at or time.perf_counter()
                last_at = time.perf_counter()
        rss = [m for p in processes if (m := _rss_mb(p.pid)) is not None]
    finally:
        for process in processes:
            if profile:
                os.kill(process.pid, signal.SIGINT)  # py-spy writes its profile, stops
            else:
                process.terminate()
        for process in processes:
            await process.wait()
        await consumer.stop()

    after = await totals(engine, shop)
    refunded = await _refunded(engine, shop.orders) if shop.orders else (0, 0)
    await engine.dispose()
    bare = None
    if ceiling and len(routes) == 1:
        bare = await bare_drain(settings, next(iter(routes)), count)
    await delete_scratch_topics(settings)

    assert len(accepted) == count, f"{count - len(accepted)} commands not accepted"
    duplicates = sum(seen.values()) - len(seen)
    moved = tuple(a - b for a, b in zip(after, before, strict=True))
    orders = {o.order_id: o for o in shop.orders}
    assert moved == _expected_change(commands, orders), f"balances, stock, carts moved by {moved}"
    cancelled = [orders[c.order_id] for c in commands if isinstance(c, CancelOrder)]
    expected = (len(cancelled), sum(o.total for o in cancelled))
    assert refunded == expected, f"{refunded} refunds (count, points), not {expected}"
    drain = last_at - first_at
    result = Drain(
        kind=kind,
        workers=workers,
        consumers_per_topic=consumers_per_topic,
        settled=settle or workers > 1,
        commands=count,
        seconds=drain,
        per_second=count / drain,
        ceiling_per_second=bare,
        worker_rss_mb=None if profile or not rss else max(rss),
        start_to_first_result_s=first_at - started,
        sales_apart=sales_apart,
    )
    print(
        f"{result.line()}\n  checks: every command accepted exactly once ({duplicates} "
        "results repeated); balances, stock and carts moved by what was sent"
        + (f"; {refunded[0]} orders refunded once, {refunded[1]} points" if shop.orders else ""),
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=KINDS, default="charges")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--consumers", type=int, default=1, help="per topic, in each worker")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--settle",
        action="store_true",
        help="start the worker first and produce once its consumers joined (as with 2+)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="sample the worker with py-spy into PATH (collapsed)"
    )
    parser.add_argument(
        "--sales-apart",
        action="store_true",
        help="the workers run the command consumers only, one more the sales aggregator",
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.kind,
            args.commands,
            args.users,
            workers=args.workers,
            profile=args.profile,
            settle=args.settle,
            consumers_per_topic=args.consumers,
            sales_apart=args.sales_apart,
        )
    )
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
