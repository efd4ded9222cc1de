"""`shopflow worker`'s own HTTP side (GET /metrics, /health/live, /health/ready on
SHOPFLOW_WORKER_HTTP_PORT), on a real worker process against the real servers: its own
topics and consumer groups, the session's database. Commands go in through Kafka and
what the worker counted is read from its /metrics, as Prometheus would.

What FastStream's Prometheus middleware sees of shopflow's batches, checked here:
- it records: one observation per batch FastStream hands to the handler, with
  `faststream_received_messages_total` counting that batch's records;
- the records a lane tops a batch up with (`SHOPFLOW_BATCH_LINGER_MS`, fetched by the
  lane itself) are not in it, so it can read below `shopflow_batch_size_sum`;
- every batch is `status="acked"`: the handler never raises (a failing batch is sought
  back inside the lane) and never acks (offsets are committed by the lane, after
  delivery), so the middleware takes "returned" for "acked";
- its duration is the handler's, which returns before the batch's results are
  delivered and its offsets committed (they overlap the next batch);
- its publishing metrics stay empty: results go through shopflow's own producer.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopflow.contracts.commands import (
    ChargePoints,
    RegisterUser,
    UpsertProduct,
)
from shopflow.contracts.events import (
    PointsCharged,
    PointsChargeRejected,
    ProductUpserted,
    RejectionReason,
    UserRegistered,
    UserRejected,
)
from shopflow.contracts.topics import COMMAND_ROUTES, ORDERS_EVENTS, POINTS_CHARGE, Topics
from shopflow.kafka_access import OPS, kafka_connection
from shopflow.persistence.tables import point_balances
from shopflow.producers.client import ShopflowClient
from shopflow.settings import Settings
from tests.support import dashboard
from tests.support.database import a_query_waits_on_a_lock, user_in_database
from tests.support.ids import new_command_id, new_entity_id
from tests.support.ports import free_port
from tests.support.service import isolated, placed_order
from tests.support.waiting import until
from tests.support.workers import start_worker_on_port, worker_ready, worker_stopped

Samples = dict[str, list[tuple[dict[str, str], float]]]

# Dashboard metrics a healthy worker declares but does not count in these tests: the
# fallback is counted by `shopflow serve` (GET /products/top); the others only when
# batches fail.
NOT_COUNTED_HERE = {
    "shopflow_top_products_fallback_total",
    "shopflow_batch_failures_total",
    "shopflow_batch_isolations_total",
    "shopflow_poison_records_total",
}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    return sum(
        v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items())
    )


@dataclass
class Worker:
    settings: Settings
    topics: Topics
    process: asyncio.subprocess.Process
    http: httpx.AsyncClient
    port: int

    async def exposition(self) -> str:
        response = await self.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    async def samples(self) -> Samples:
        return dashboard.series(await self.exposition())

    def group(self, contract_topic: str) -> str:
        return self.settings.command_group(self.topics.name(contract_topic))


@pytest.fixture(scope="module")
async def worker(test_settings: Settings) -> AsyncIterator[Worker]:
    settings = isolated(test_settings, "worker-http")
    port = free_port()
    process = await start_worker_on_port(settings, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await worker_ready(http, process)
            yield Worker(settings, Topics(settings.topic_prefix), process, http, port)
    finally:
        assert await worker_stopped(process) == 0


@pytest.fixture(scope="module")
async def client(worker: Worker) -> AsyncIterator[ShopflowClient]:
    async with ShopflowClient(
        kafka_connection(worker.settings, OPS), topics=worker.topics
    ) as started:
        yield started


@pytest.fixture(scope="module")
async def db(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(test_settings.database_url)
    yield engine
    await engine.dispose()


async def test_the_running_worker_is_live_and_ready(worker: Worker) -> None:
    live = await worker.http.get("/health/live")
    ready = await worker.http.get("/health/ready")

    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"consumers": "up", "postgresql": "up"}}


async def test_an_idle_connection_outlives_a_clients_keep_alive_expiry(worker: Worker) -> None:
    # SHOPFLOW_HTTP_KEEP_ALIVE_S (75 s) above httpx's own expiry (5 s): at uvicorn's 5 s a
    # request sent on a connection just as the server closed it got no answer at all.
    asked = b"GET /health/live HTTP/1.1\r\nHost: worker\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
    try:
        for pause_s in (0.0, 6.0):  # the second after longer than uvicorn's default
            await asyncio.sleep(pause_s)
            writer.write(asked)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        writer.close()


async def test_commands_are_counted_by_topic_and_outcome(
    worker: Worker, client: ShopflowClient
) -> None:
    before = await worker.samples()
    user_id = new_entity_id()
    charge = ChargePoints(command_id=new_command_id("m"), user_id=user_id, amount=100)

    registered = await client.send_and_wait(
        RegisterUser(command_id=new_command_id("m"), user_id=user_id, name="Metrics")
    )
    again = await client.send_and_wait(
        RegisterUser(command_id=new_command_id("m"), user_id=user_id, name="Again")
    )
    charged = await client.send_and_wait(charge)
    await client.send(charge)  # the same command again: replayed
    await client.send(charge.model_copy(update={"amount": 999}))  # same id, other payload
    [_, replayed, conflict] = await client.wait_for_results(charge.command_id, count=3)
    unknown = await client.send_and_wait(
        ChargePoints(command_id=new_command_id("m"), user_id=new_entity_id(), amount=5)
    )

    assert isinstance(registered, UserRegistered)
    assert isinstance(again, UserRejected)
    assert again.reason is RejectionReason.USER_EXISTS
    assert isinstance(charged, PointsCharged)
    assert replayed == charged
    assert isinstance(conflict, PointsChargeRejected)
    assert conflict.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert isinstance(unknown, PointsChargeRejected)
    assert unknown.reason is RejectionReason.UNKNOWN_USER
    expected = {
        ("shop.users.register", "accepted"): 1,
        ("shop.users.register", "rejected"): 1,
        ("shop.points.charge", "accepted"): 1,
        ("shop.points.charge", "replayed"): 1,
        ("shop.points.charge", "conflict"): 1,
        ("shop.points.charge", "rejected"): 1,
    }
    after: Samples = {}

    async def counted() -> bool:
        nonlocal after
        after = await worker.samples()
        return all(
            value(after, "shopflow_commands_total", topic=t, outcome=o)
            - value(before, "shopflow_commands_total", topic=t, outcome=o)
            == n
            for (t, o), n in expected.items()
        )

    await until(counted, 10, f"shopflow_commands_total moves by {expected}")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Nothing else was answered on these topics, and every charge record went through a
    # batch: 4 records in 1 to 4 batches.
    assert delta("shopflow_commands_total", topic="shop.points.charge") == 4
    assert delta("shopflow_batch_size_sum", topic="shop.points.charge") == 4
    assert 1 <= delta("shopflow_batch_seconds_count", topic="shop.points.charge") <= 4
    assert 1 <= delta("shopflow_batch_seconds_count", topic="shop.users.register") <= 2
    # FastStream's middleware records our manually acknowledged batch subscribers: the
    # records of the batches it handed over (top-ups not among them), all "acked".
    charge_topic = worker.topics.name(POINTS_CHARGE)
    received = delta("faststream_received_messages_total", handler=charge_topic)
    assert 1 <= received <= 4
    assert delta("faststream_received_processed_messages_total", handler=charge_topic) == received
    assert (
        delta("faststream_received_processed_messages_total", handler=charge_topic, status="acked")
        == received
    )
    assert delta(
        "faststream_received_processed_messages_duration_seconds_count", handler=charge_topic
    ) == delta("shopflow_batch_seconds_count", topic="shop.points.charge")
    assert value(after, "faststream_received_messages_in_process", handler=charge_topic) == 0
    assert value(after, "faststream_published_messages_total") == 0


async def test_a_malformed_record_is_counted_as_a_dead_letter_by_reason(
    worker: Worker, client: ShopflowClient
) -> None:
    before = await worker.samples()

    await client.send_raw(worker.topics.name(POINTS_CHARGE), b"1", b"{not json")

    async def counted() -> bool:
        after = await worker.samples()
        labels = {"topic": "shop.points.charge", "reason": "invalid_json"}
        return (
            value(after, "shopflow_dead_letters_total", **labels)
            - value(before, "shopflow_dead_letters_total", **labels)
            == 1
        )

    await until(counted, 15, "one invalid_json dead letter counted")


async def _lags(worker: Worker) -> dict[tuple[str, str, str], float]:
    return {
        (labels["group"], labels["topic"], labels["partition"]): v
        for labels, v in (await worker.samples()).get("shopflow_consumer_lag", [])
    }


async def test_the_lag_gauge_shows_each_partition_and_the_records_waiting_behind_a_batch(
    worker: Worker, client: ShopflowClient, db: AsyncEngine
) -> None:
    partitions = [str(p) for p in range(worker.settings.command_partitions)]
    expected = {
        (worker.group(route.topic), worker.topics.name(route.topic), p)
        for route in COMMAND_ROUTES
        for p in partitions
    } | {
        (
            f"{worker.settings.consumer_group}.top-products",
            worker.topics.name(ORDERS_EVENTS),
            str(p),
        )
        for p in range(worker.settings.event_partitions)
    }
    lags: dict[tuple[str, str, str], float] = {}

    async def every_partition_caught_up() -> bool:
        nonlocal lags
        lags = await _lags(worker)
        return set(lags) == expected and not any(lags.values())

    await until(every_partition_caught_up, 30, f"a lag of 0 for each of {sorted(expected)}")

    # A batch held on a row lock: the records sent behind it on its partition wait, and
    # the gauge counts them (fetched meanwhile, not yet taken by a batch).
    user_id = await user_in_database(db)
    topic = worker.topics.name(POINTS_CHARGE)
    group = worker.group(POINTS_CHARGE)
    first, *behind = [
        ChargePoints(command_id=new_command_id("lag"), user_id=user_id, amount=10) for _ in range(6)
    ]
    producer = kafka_connection(worker.settings, OPS).producer()
    await producer.start()
    try:
        async with db.connect() as blocker:
            await blocker.execute(
                select(point_balances.c.balance)
                .where(point_balances.c.user_id == user_id)
                .with_for_update()
            )
            sent = await producer.send_and_wait(
                topic, first.model_dump_json().encode(), key=str(user_id).encode()
            )
            await a_query_waits_on_a_lock(db, timeout=30)
            # One record batch, so one fetch response holds them all.
            records = producer.create_batch()
            for command in behind:
                records.append(
                    key=str(user_id).encode(),
                    value=command.model_dump_json().encode(),
                    timestamp=None,
                )
            await (await producer.send_batch(records, topic, partition=sent.partition))
            key = (group, topic, str(sent.partition))

            async def behind_are_waiting() -> bool:
                return (await _lags(worker)).get(key) == len(behind)

            await until(behind_are_waiting, 15, f"a lag of {len(behind)} on {key}")
            others = {k: v for k, v in (await _lags(worker)).items() if k != key}
            assert set(others) == expected - {key}
            assert not any(others.values())
            # Ready means running, not keeping up: a blocked batch does not change it.
            assert (await worker.http.get("/health/ready")).status_code == 200
            await blocker.rollback()
    finally:
        await producer.stop()

    for command in (first, *behind):
        assert isinstance(await client.wait_for_result(command.command_id), PointsCharged)

    async def caught_up() -> bool:
        return (await _lags(worker)).get(key) == 0

    await until(caught_up, 15, f"a lag of 0 on {key} once the batch went through")


async def test_every_metric_the_dashboard_reads_is_on_the_worker(
    worker: Worker, client: ShopflowClient
) -> None:
    # Something for every panel: each command topic the flow touches, an order for the
    # sales aggregator, a dead letter.
    user_id = new_entity_id()
    product_id = new_entity_id()
    for command in (
        RegisterUser(command_id=new_command_id("d"), user_id=user_id, name="Dashboard"),
        UpsertProduct(
            command_id=new_command_id("d"),
            product_id=product_id,
            name="Lamp",
            price=300,
            stock_added=5,
        ),
        ChargePoints(command_id=new_command_id("d"), user_id=user_id, amount=1_000),
    ):
        assert isinstance(
            await client.send_and_wait(command), UserRegistered | ProductUpserted | PointsCharged
        )
    before = await worker.samples()
    await placed_order(client, user_id, product_id, 2)
    await client.send_raw(worker.topics.name(POINTS_CHARGE), b"2", b"[")

    async def counted() -> bool:
        after = await worker.samples()
        return value(after, "shopflow_sales_applied_total", result="new") > value(
            before, "shopflow_sales_applied_total", result="new"
        ) and value(after, "shopflow_dead_letters_total", reason="invalid_json") > value(
            before, "shopflow_dead_letters_total", reason="invalid_json"
        )

    await until(counted, 15, "the order counted by the aggregator and the dead letter")

    exposition = await worker.exposition()
    declared = dashboard.declared(exposition)
    samples = dashboard.series(exposition)
    for query in dashboard.queries(dashboard.load()):
        assert query.metrics <= declared, query.expression
        counted_here = query.metrics - NOT_COUNTED_HERE
        for metric in counted_here:
            assert samples.get(metric), f"no {metric} series for {query.expression}"
        labels = {name for m in counted_here for found, _ in samples[m] for name in found}
        if counted_here:
            assert query.grouping_labels | query.matcher_labels <= labels, query.expression


async def test_a_second_worker_on_the_same_port_refuses_to_start(worker: Worker) -> None:
    second = await start_worker_on_port(worker.settings, worker.port, capture=True)
    async with asyncio.timeout(60):
        _, stderr = await second.communicate()

    assert second.returncode == 1
    message = stderr.decode()
    assert message.startswith("shopflow refuses to start: cannot serve the worker's metrics")
    assert f"127.0.0.1:{worker.port}: Address already in use" in message
    assert "SHOPFLOW_WORKER_HTTP_PORT" in message
    assert (await worker.http.get("/health/ready")).status_code == 200  # undisturbed


async def test_sigterm_stops_the_worker_and_its_http_server(test_settings: Settings) -> None:
    settings = isolated(test_settings, "worker-stop")
    port = free_port()
    process = await start_worker_on_port(settings, port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        try:
            await worker_ready(http, process)
        finally:
            code = await worker_stopped(process)

        assert code == 0
        with pytest.raises(httpx.ConnectError):
            await http.get("/health/live")
    # Nothing listens there any more: a worker could take the port again (as the worker
    # binds, with SO_REUSEADDR, past the connections' TIME_WAIT).
    with socket.create_server(("127.0.0.1", port)):
        pass
