"""One chaos run: a worker pool and a `shopflow serve --no-consume` (the HTTP side) on
the chaos servers, the shop set up, the stream sent at a steady rate while one fault is
injected (a share of it over HTTP: `tests.chaos.over_http`), then quiescence and the
checks.

The checks, whatever the fault:
- every command has an outcome (a result that is not `temporarily_unavailable`; a
  command answered that is sent again, as the contract allows), and every result of a
  command carries the same event id;
- every poison record has a dead letter with its reason, and every dead letter is of a
  poison record;
- per key, the outcomes follow the commands' offsets (where each landed, however it was
  sent: `tests.chaos.landings`);
- every final answer over HTTP carries the `event_id` of its command's outcome on the
  result topic, with the status that outcome is answered with; every request over HTTP
  got one (retrying as a client would: `tests.chaos.http_sender`);
- `shopflow check`'s invariants hold;
- the database holds what the model (`tests.chaos.model`) computes from the outcomes;
- no command id has two point transactions of a kind, two orders or two refunds, and no
  order is refunded twice;
- of two cancels (or ships) of one order, the first by offset is the one accepted.
The longest wait is from a command's intended send time (open loop: a stalled service
cannot slow the sender down and hide its queue) to its outcome's arrival.

With access control on, as deployed: the run's topics and their ACLs are made as the Kafka
admin before the workers start (`tests.support.scratch.create_scratch_topics`) and removed
as the admin after a run without problems; the schema is migrated as its owner; the
workers are the service's principal (their servers' credentials, SHOPFLOW_INFRA_DIR),
the serve the gateway's for its sends; the driver sends and observes as `shopflow-ops`
(it writes every command topic and reads the results and the dead letters), reads where
commands landed as the admin, and writes over HTTP with tokens signed by the servers'
key (a customer's own, and the payments service's for charges).
"""

import asyncio
import bisect
import contextlib
import hashlib
import itertools
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from shopflow.contracts.commands import CancelOrder, PlaceOrder, ShipOrder
from shopflow.contracts.events import OrderPlaced, ResultEvent
from shopflow.contracts.principals import ADMIN, OPS
from shopflow.contracts.topics import ROUTES_BY_TOPIC, Topics
from shopflow.kafka_access import kafka_connection
from shopflow.persistence.database import create_engine
from shopflow.persistence.migrate import migrate
from shopflow.persistence.reconciliation import describe, find_violations
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings
from tests.chaos.database import read_state, recorded_twice
from tests.chaos.http_sender import RETRY_BUDGET_S, RETRY_OTHER_5XX, HttpSender, answer_problems
from tests.chaos.landings import Landings
from tests.chaos.model import differences, expected_state
from tests.chaos.observer import Observer
from tests.chaos.probes import ProbeCounts, Probes
from tests.chaos.serve import Serve, stopped_cleanly
from tests.chaos.servers import REPO, ChaosServers
from tests.chaos.workers import WorkerPool
from tests.chaos.workload import Expected, Record, Workload, build
from tests.support.scratch import create_scratch_topics, delete_scratch_topics, service_env

log = logging.getLogger(__name__)

SETUP_TIMEOUT_S = 120.0
QUIESCENCE_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0  # for the workers' graceful stop at the end
AFTER_QUIESCENCE_S = 1.5  # room for a stray second result, if there were one
RESEND_AFTER_S = 1.0  # after a `temporarily_unavailable` answer
# A fault still striking gets more stream, up to this many times its planned length.
# cluster-leader-kill waits for every replica in sync before a kill, which under the
# stream and the HTTP share took 25 s and more of make test's 6 s stream (at 4 times,
# the clean-clone run ended with no kill).
MAX_STREAM_GROWTH = 10
LANDINGS_TIMEOUT_S = 15.0
LAG_PROBE_S = 0.1  # after quiescence, for the reader of the command topics


@dataclass
class Run:
    """What a fault works with while the stream is sent."""

    servers: ChaosServers
    settings: Settings
    workers: WorkerPool
    rng: random.Random
    total: int  # records in the stream as planned (it grows while a fault is not done)
    serve: Serve | None = None  # the HTTP side the stream's HTTP share is sent to
    sent: int = 0
    streaming: bool = True  # the driver is still sending
    hold_stream: bool = False  # set by a fault that needs the stream to go on for now
    notes: list[str] = field(default_factory=list)  # measurements, for the report
    problems: list[str] = field(default_factory=list)  # what a fault's own checks found
    moments: list[tuple[float, str]] = field(default_factory=list)  # see `mark`
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def advance(self, sent: int) -> None:
        self.sent = sent
        async with self._progress:
            self._progress.notify_all()

    def mark(self, what: str) -> None:
        """A fault's moment (a kill, a join), for the report's longest wait around it."""
        self.moments.append((time.monotonic(), what))

    async def until_sent(self, share: float) -> None:
        """Wait until this share of the stream has been sent."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.sent >= share * self.total)


# A fault: injected while the stream is sent; returns how many faults it injected.
Fault = Callable[[Run], Coroutine[Any, Any, int]]


@dataclass
class Report:
    fault: str
    records: int  # sent in the stream: commands, their duplicates and resends, poison
    commands: int  # distinct commands
    poison: int
    faults: int
    lost: int
    applied_twice: int
    longest_wait_s: float
    p99_wait_s: float
    resent: int  # commands sent again after `temporarily_unavailable`
    stuck_stops: int  # workers killed at the end, their graceful stop not done in time
    seconds: float
    problems: list[str]
    notes: list[str]
    # The stream's cancels and ships: records sent and distinct commands per type, and
    # their outcomes ("CancelOrder records", "CancelOrder commands", "CancelOrder
    # order_shipped", "ShipOrder accepted", ...); the orders with two cancels (or ships)
    # checked by offset, and left out.
    moves: dict[str, int] = field(default_factory=dict)
    # Over HTTP: records sent so (each once, whatever its retries; among `records`),
    # distinct commands whose first copy went so, requests made, retries by cause (503,
    # 202, no answer, 429, other 5xx), final answers and those that carried the topic's
    # event id (and status), commands given up and handed to the Kafka path.
    http_records: int = 0
    http_commands: int = 0
    http_requests: int = 0
    http_retries: dict[str, int] = field(default_factory=dict)
    http_answers: int = 0
    http_matched: int = 0
    http_given_up: int = 0
    # From the stream's start to the fault's end (tests/chaos/probes.py): GET
    # /products/{id}, and writes on the service's database URL.
    probes: ProbeCounts = field(default_factory=ProbeCounts)

    def line(self) -> str:
        return (
            f"{self.fault}: {self.records} records ({self.commands} commands, {self.poison} "
            f"poison), {self.faults} faults, lost {self.lost}, applied twice "
            f"{self.applied_twice}, longest wait {self.longest_wait_s:.2f} s (p99 "
            f"{self.p99_wait_s:.2f}), {self.resent} sent again after temporarily_unavailable, "
            f"{self.stuck_stops} graceful stops not done in {STOP_TIMEOUT_S:g} s; over HTTP "
            f"{self.http_records} records ({self.http_commands} commands, "
            f"{self.http_requests} requests; retries: {self.retries_line()}), "
            f"{self.http_matched} of {self.http_answers} answers with the topic's event id; "
            f"{self.probes.describe()}; "
            f"{len(self.problems)} problems, {self.seconds:.0f} s"
        )

    def retries_line(self) -> str:
        return ", ".join(f"{n} {cause}" for cause, n in sorted(self.http_retries.items())) or "0"


class Sender:
    """Sends records and keeps where each landed; a send that fails (a broker down) is
    tried again, as an upstream service would (the ledger answers a repeat)."""

    def __init__(self, kafka: KafkaConnection, topics: Topics) -> None:
        self._topics = topics
        self.producer = kafka.producer(
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            request_timeout_ms=30_000,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.landed: dict[str, list[RecordMetadata]] = {}  # by command id
        self.acknowledged: dict[str, float] = {}  # by command id: its first send's
        self.records = 0
        self.failed_sends = 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.flush()
        await self.producer.stop()

    def send(self, record: Record) -> None:
        self.records += 1
        task = asyncio.create_task(self._deliver(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def _deliver(self, record: Record) -> None:
        while True:
            try:
                future = await self.producer.send(
                    self._topics.name(record.topic), record.value, key=record.key
                )
                metadata = await future
            except KafkaError as exc:
                self.failed_sends += 1
                log.info("send failed (%s), sending again", exc)
                await asyncio.sleep(0.5)
                continue
            if record.command is not None:
                self.landed.setdefault(record.command_id, []).append(metadata)
                self.acknowledged.setdefault(record.command_id, time.monotonic())
            return


async def _send_and_wait(
    sender: Sender, observer: Observer, records: list[Record], timeout: float
) -> None:
    for record in records:
        sender.send(record)
    deadline = time.monotonic() + timeout
    while any(observer.final(r.command_id) is None for r in records):
        observer.check_alive()
        if time.monotonic() > deadline:
            missing = [r.command_id for r in records if observer.final(r.command_id) is None]
            raise TimeoutError(f"setup: {len(missing)} commands unanswered, e.g. {missing[:3]}")
        await asyncio.sleep(0.05)


def _answers(observer: Observer, records: list[Record]) -> dict[str, ResultEvent]:
    """The outcomes of `records` that have one, by command id."""
    answers = {}
    for record in records:
        final = observer.final(record.command_id)
        if final is not None:
            answers[record.command_id] = final.event
    return answers


def _sha(record: Record) -> str:
    return hashlib.sha256(record.value).hexdigest()


def _quiet(workload: Workload, observer: Observer) -> bool:
    if any(observer.final(c) is None for c in workload.commands):
        return False
    lettered = {letter.payload_sha256 for letter in observer.dead_letters}
    return all(_sha(p) in lettered for p in workload.poison)


async def run(
    fault_name: str,
    fault: Fault,
    servers: ChaosServers,
    *,
    commands: int,
    rate: int,
    workers: int = 2,
    seed: int | None = None,
    session_timeout_ms: int | None = None,
) -> Report:
    """One fault, injected once (or as often as it likes) during one stream."""
    seed = seed if seed is not None else random.randrange(2**32)
    started = time.monotonic()
    label = f"chaos-{fault_name}-{seed:x}-{secrets.token_hex(2)}"
    settings = servers.settings(label)
    topics = Topics(settings.topic_prefix)
    workload = build(commands, run=label, seed=seed)
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )
    # As the Kafka admin: waits for every broker (the three of the cluster), creates the
    # topics, the principals' SCRAM users and the ACLs, before any worker starts.
    await create_scratch_topics(settings, brokers=servers.brokers)
    extra = (
        {}
        if session_timeout_ms is None
        else {"SHOPFLOW_SESSION_TIMEOUT_MS": str(session_timeout_ms)}
    )
    # The logs under the run's consumer group, where redis_fault's serve writes its own.
    logs = REPO / ".infra" / "chaos-logs" / settings.consumer_group
    pool = WorkerPool(service_env(settings, **extra), logs)
    serve = Serve(settings, logs / "serve-writes.log")
    chaos = Run(servers, settings, pool, random.Random(seed), len(workload.stream), serve)
    resent: set[str] = set()
    ops = kafka_connection(settings, OPS)
    sender = Sender(ops, topics)
    landings = Landings(kafka_connection(settings, ADMIN), topics)

    by_id: dict[str, Record] = {}

    def send_again(command_id: str) -> None:
        """As an upstream service would, after `temporarily_unavailable`: a little later.
        A command over HTTP whose request still waits is sent again by its client."""
        if command_id not in by_id:
            by_id.update(workload.commands)  # the stream may have grown
        record = by_id.get(command_id)
        if record is None:
            return
        if record.http is not None:
            if http.waiting_for(command_id):
                return
            record = replace(record, http=None)
        resent.add(command_id)
        asyncio.get_running_loop().call_later(RESEND_AFTER_S, resend, record)

    def resend(record: Record) -> None:
        if observer.final(record.command_id) is None:  # no other copy answered meanwhile
            sender.send(record)

    observer = Observer(ops, topics, send_again)
    http = HttpSender(serve.url, settings, give_up=lambda r: resend(replace(r, http=None)))
    intended: dict[str, float] = {}
    serve_code: int | None = None
    serving: asyncio.Task[None] | None = None
    lagging: asyncio.Task[None] | None = None
    lags: list[float] = []
    waiting_over_http = 0
    probes = Probes(serve.url, workload.shop.plenty[0], settings)
    try:
        for _ in range(workers):
            await pool.start()
        # Started beside the setup (sent over Kafka), awaited before the stream.
        serving = asyncio.create_task(_started(serve, chaos.notes))
        await sender.start()
        await observer.start(sender.producer)
        await landings.start(sender.producer)
        for phase in workload.setup:
            await _send_and_wait(sender, observer, phase, SETUP_TIMEOUT_S)
        # The holders' orders are answered: their ids make the setup's last phase (ships
        # and cancels) and the stream's cancels and ships, which lengthen the stream.
        answers = _answers(observer, workload.setup_commands)
        planned = len(workload.stream)
        moves = workload.settle(answers)
        await _send_and_wait(sender, observer, moves, SETUP_TIMEOUT_S)
        chaos.total = len(workload.stream)
        chaos.notes.append(f"workers started and shop set up in {time.monotonic() - started:.1f} s")
        chaos.notes.append(_settled(workload, answers, moves, chaos.total - planned))
        await serving
        lagging = asyncio.create_task(_loop_lag(lags))
        await probes.start()
        injecting = asyncio.create_task(fault(chaos))
        begin = time.monotonic() + 0.1
        i = 0
        while i < len(workload.stream):
            record = workload.stream[i]
            due = begin + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if record.command is not None:
                intended.setdefault(record.command_id, due)
            if record.http is not None:
                http.send(record)
            else:
                sender.send(record)
            i += 1
            await chaos.advance(i)
            if injecting.done():
                injecting.result()  # a fault that failed stops the run
            elif chaos.hold_stream and len(workload.stream) == i < MAX_STREAM_GROWTH * chaos.total:
                workload.extend(rate)  # a second more
        chaos.streaming = False
        streamed = time.monotonic()
        faults = await injecting
        await probes.stop()
        finished = time.monotonic() - streamed
        sending = streamed - begin
        chaos.notes.append(f"stream sent in {sending:.1f} s, fault over {finished:.1f} s later")
        deadline = time.monotonic() + QUIESCENCE_TIMEOUT_S
        while not _quiet(workload, observer) and time.monotonic() < deadline:
            observer.check_alive()
            await asyncio.sleep(0.1)
        chaos.notes.append(f"quiet {time.monotonic() - streamed:.1f} s after the stream")
        await http.drain(max(1.0, deadline - time.monotonic()))
        await sender.flush()
        landed_by = time.monotonic() + LANDINGS_TIMEOUT_S
        while any(c not in landings.offsets for c in workload.commands):
            landings.check_alive()
            if time.monotonic() > landed_by:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(AFTER_QUIESCENCE_S)
        observer.check_alive()
    finally:
        stopping = time.monotonic()
        await probes.stop()
        if lagging is not None:
            lagging.cancel()
            chaos.notes.append(_describe_lag(lags))
        if serving is not None and not serving.done():
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        waiting_over_http = await http.close()
        serve_code = await serve.stop()
        exits = await pool.stop_all(STOP_TIMEOUT_S)
        chaos.notes.append(f"workers stopped in {time.monotonic() - stopping:.1f} s")
        await sender.stop()
        await observer.stop()
        await landings.stop()
    problems = [f"{name} exited {code} on SIGTERM" for name, code in exits if code]
    if not stopped_cleanly(serve_code):
        problems.append(f"shopflow serve exited {serve_code} on SIGTERM")
    if serve.shutdown_failed():
        problems.append(f"shopflow serve's shutdown failed (see {serve.log})")
    if waiting_over_http:
        problems.append(f"{waiting_over_http} requests over HTTP had no final answer at the end")
    # A 5xx other than 503 is a problem: the contract has none (the client sent it again
    # with the same key all the same, so the other checks still hold).
    if http.retries[RETRY_OTHER_5XX]:
        problems.append(
            f"{http.retries[RETRY_OTHER_5XX]} answers over HTTP were a 5xx other than 503"
        )
    chaos.notes += [f"over HTTP, answered {example}" for example in http.examples]
    chaos.notes.append(http.latencies())
    if http.no_answers:
        causes = ", ".join(f"{n} {name}" for name, n in http.no_answers.most_common())
        chaos.notes.append(f"over HTTP, no answer: {causes}")
    if http.given_up:
        chaos.notes.append(
            f"over HTTP, {http.given_up} commands given up after {RETRY_BUDGET_S:g} s "
            "without a final answer, and sent over Kafka"
        )
    # A worker that does not finish its graceful stop is a problem: its log has the
    # worker's own report of where each task waits (shopflow/slow_stop.py) and py-spy's
    # dump. (It is how a dead aiokafka metadata task was found after broker restarts:
    # shopflow/aiokafka_on_uvloop.py.)
    stuck = [name for name, code in exits if code is None]
    problems += [f"{name}: graceful stop not done in {STOP_TIMEOUT_S:g} s" for name in stuck]
    problems += chaos.problems
    checking = time.monotonic()
    report = await _check(
        fault_name, workload, settings, observer, _landed(sender, landings), intended, faults
    )
    report.problems = problems + report.problems
    report.records = sender.records + http.records
    report.http_records = http.records
    report.http_commands = len(http.commands)
    report.http_requests = http.requests
    report.http_retries = dict(http.retries)
    report.http_answers = len(http.answers)
    http_problems, report.http_matched, answered_after = answer_problems(http.answers, observer)
    report.problems += http_problems
    chaos.notes.append(answered_after)
    report.http_given_up = http.given_up
    report.probes = probes.counts
    report.resent = len(resent)
    report.stuck_stops = len(stuck)
    report.seconds = time.monotonic() - started
    report.notes = chaos.notes
    report.notes += _waits_around(chaos.moments, intended, observer, workload.commands)
    report.notes += _slowest(
        chaos.moments, intended, observer, landings, sender.acknowledged, workload.commands
    )
    report.notes.append(f"checked in {time.monotonic() - checking:.1f} s")
    report.notes += _describe_moves(report.moves)
    if not report.problems:
        await delete_scratch_topics(settings)
    return report


async def _loop_lag(lags: list[float]) -> None:
    """How late the driver's own loop wakes a task (its load shows in every wait)."""
    while True:
        began = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(time.monotonic() - began - LAG_PROBE_S)


def _describe_lag(lags: list[float]) -> str:
    ordered = sorted(lags) or [0.0]
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return f"the driver's loop late by {p99:.3f} s at p99, {ordered[-1]:.3f} s at worst"


async def _started(serve: Serve, notes: list[str]) -> None:
    began = time.monotonic()
    await serve.start()
    notes.append(f"shopflow serve answering in {time.monotonic() - began:.1f} s")


def _landed(sender: Sender, landings: Landings) -> dict[str, list[int]]:
    """Every copy's offset on its topic, by command id: the driver's own sends, and
    whatever the reader of the command topics saw (the HTTP ones too)."""
    landed = {command_id: [m.offset for m in sent] for command_id, sent in sender.landed.items()}
    for command_id, offsets in landings.offsets.items():
        landed.setdefault(command_id, []).extend(offsets)
    return landed


async def _check(
    fault_name: str,
    workload: Workload,
    settings: Settings,
    observer: Observer,
    landed: dict[str, list[int]],
    intended: dict[str, float],
    faults: int,
) -> Report:
    problems: list[str] = []
    outcomes: dict[str, ResultEvent] = {}
    lost = []
    twice = []
    waits = []
    for command_id in workload.commands:
        final = observer.final(command_id)
        if final is None:
            lost.append(command_id)
            continue
        outcomes[command_id] = final.event
        waits.append(final.arrived - intended[command_id])
        event_ids = {s.event.event_id for s in observer.results[command_id] if not s.transient}
        if len(event_ids) > 1:
            twice.append(f"{command_id}: {len(event_ids)} different event ids")
    problems += [f"{c}: no outcome" for c in lost[:20]]
    unknown = (
        observer.results.keys()
        - workload.commands.keys()
        - {r.command_id for phase in workload.setup for r in phase}
    )
    problems += [f"a result for {c}, never sent" for c in sorted(unknown)[:20]]

    poison_by_sha = {_sha(p): p for p in workload.poison}
    lettered = set()
    for letter in observer.dead_letters:
        poison = poison_by_sha.get(letter.payload_sha256)
        if poison is None:
            problems.append(
                f"dead letter {letter.dead_letter_id} ({letter.reason}) of no poison record"
            )
        elif letter.reason != poison.poison:
            problems.append(
                f"dead letter {letter.dead_letter_id}: {letter.reason}, sent as {poison.poison}"
            )
        lettered.add(letter.payload_sha256)
    unlettered = poison_by_sha.keys() - lettered
    problems += [
        f"poison {poison_by_sha[s].value[:60]!r}: no dead letter" for s in sorted(unlettered)[:20]
    ]

    problems += _order_problems(workload, observer, landed)
    first_move_problems, first_moves = _first_move_problems(workload, observer, landed)
    problems += first_move_problems

    engine = create_engine(settings.database_url, pool_size=2)
    try:
        setup_outcomes = _answers(observer, workload.setup_commands)
        model, outcome_problems = expected_state(workload, outcomes | setup_outcomes)
        problems += outcome_problems
        problems += differences(model, await read_state(engine, workload))
        twice += await recorded_twice(engine, workload)
        violations = await find_violations(engine)
        if violations:
            problems.append("shopflow check: " + describe(violations))
    finally:
        await engine.dispose()
    problems += twice
    waits.sort()
    return Report(
        fault=fault_name,
        records=0,
        commands=len(workload.commands),
        poison=len(workload.poison),
        faults=faults,
        lost=len(lost) + len(unlettered),
        applied_twice=len(twice),
        longest_wait_s=waits[-1] if waits else 0.0,
        p99_wait_s=waits[int(0.99 * (len(waits) - 1))] if waits else 0.0,
        resent=0,
        stuck_stops=0,
        seconds=0.0,
        problems=problems,
        notes=[],
        moves=_moves(workload, outcomes) | first_moves,
    )


def _waits_around(
    moments: list[tuple[float, str]],
    intended: dict[str, float],
    observer: Observer,
    commands: dict[str, Record],
) -> list[str]:
    """For each moment a fault marked, the longest wait of the commands answered after it
    and before the next one (the latest moment before an answer is the one that held it
    up, if any did), with that command's topic and when it was due."""
    longest: list[tuple[float, str]] = [(0.0, "")] * len(moments)
    times = [at for at, _ in moments]
    for command_id, due in intended.items():
        final = observer.final(command_id)
        if final is None:
            continue
        i = bisect.bisect_right(times, final.arrived) - 1
        if i >= 0 and final.arrived - due > longest[i][0]:
            longest[i] = (final.arrived - due, command_id)
    notes = []
    for i, (at, what) in enumerate(moments):
        wait, command_id = longest[i]
        note = f"longest wait of the commands answered after {what} {i + 1}: {wait:.2f} s"
        if command_id:
            due = intended[command_id] - at
            note += f" ({commands[command_id].topic}, due {due:+.2f} s from the {what})"
        notes.append(note)
    return notes


SLOWEST = 3  # commands of each path whose waits are taken apart in the notes


def _slowest(
    moments: list[tuple[float, str]],
    intended: dict[str, float],
    observer: Observer,
    landings: Landings,
    acknowledged: dict[str, float],
    commands: dict[str, Record],
) -> list[str]:
    """The longest wait of the commands sent over Kafka and of those sent over HTTP (on a
    busy machine the HTTP share's own queue can outweigh any fault), and the SLOWEST of
    each taken apart, from the records' timestamps and when the readers got them: from
    when the command was due until its producer sent it, until Kafka acknowledged it (the
    driver's own sends), until the reader of the command topics got it (every replica
    acks=all waits for had it: a consumer could fetch it), until a worker sent its
    outcome, until the observer got that. A reader's own delay (finding a partition's new
    leader, its loop late) counts in the step it ends."""
    by_path: dict[str, list[tuple[float, str]]] = {"Kafka": [], "HTTP": []}
    for command_id, due in intended.items():
        final = observer.final(command_id)
        if final is not None:
            path = "HTTP" if commands[command_id].http is not None else "Kafka"
            by_path[path].append((final.arrived - due, command_id))
    notes = []
    times = [at for at, _ in moments]
    for path, waits in by_path.items():
        if not waits:
            continue
        waits.sort(reverse=True)
        p99 = waits[int(0.01 * (len(waits) - 1))][0]
        notes.append(
            f"over {path}: {len(waits)} commands, longest wait {waits[0][0]:.2f} s (p99 {p99:.2f})"
        )
        for wait, command_id in waits[:SLOWEST]:
            due = intended[command_id]
            final = observer.final(command_id)
            assert final is not None
            where = commands[command_id].topic
            steps = "not seen on its topic"
            if command_id in landings.first:
                partition, sent, landed = landings.first[command_id]
                where += f"[{partition}]"
                acked = acknowledged.get(command_id)
                steps = (
                    f"sent after {sent - due:.2f} s, "
                    + ("" if acked is None else f"acknowledged after {acked - due:.2f} s, ")
                    + f"on the topic after {landed - due:.2f} s, "
                    f"outcome sent after {final.created - due:.2f} s"
                )
            # Relative to the moment before it was due (the first, if none was).
            i = max(0, bisect.bisect_right(times, due) - 1)
            if moments:
                where += f", due {due - times[i]:+.2f} s from {moments[i][1]} {i + 1}"
            notes.append(f"    {wait:.2f} s: {where}; {steps}")
    return notes


def _order_problems(
    workload: Workload, observer: Observer, landed: dict[str, list[int]]
) -> list[str]:
    """Per command topic and key, the outcomes' offsets follow the commands' offsets
    (each command at its first copy; commands answered `temporarily_unavailable` and
    sent again are left out, as their place moved)."""
    lanes: dict[tuple[str, bytes], list[tuple[int, int, str]]] = {}
    for command_id, record in workload.commands.items():
        final = observer.final(command_id)
        offsets = landed.get(command_id)
        if final is None or not offsets:
            continue
        if any(s.transient for s in observer.results[command_id]):
            continue
        first = min(offsets)
        lanes.setdefault((record.topic, record.key), []).append((first, final.offset, command_id))
    problems = []
    for (topic, key), lane in lanes.items():
        lane.sort()
        for (_, before, earlier), (_, after, later) in itertools.pairwise(lane):
            if after <= before:
                problems.append(
                    f"{ROUTES_BY_TOPIC[topic].type_name} key {key.decode()}: {later}'s outcome "
                    f"came before {earlier}'s"
                )
    return problems[:20]


def _first_move_problems(
    workload: Workload, observer: Observer, landed: dict[str, list[int]]
) -> tuple[list[str], dict[str, int]]:
    """Of one order's `Expected.FIRST_MOVE` cancels (or ships), the one accepted is the
    one that landed first (offset order on its key; the model checks that one is). Left
    out: an order one of whose commands has no outcome, or was answered
    `temporarily_unavailable` and sent again (its place moved). Also how many orders
    were checked and left out."""
    moved: dict[tuple[str, int], list[tuple[int, str, bool]]] = {}  # (offset, id, accepted)
    left_out: set[tuple[str, int]] = set()
    for command_id, record in workload.commands.items():
        command = record.command
        if record.expected is not Expected.FIRST_MOVE:
            continue
        assert isinstance(command, CancelOrder | ShipOrder)
        group = (type(command).__name__, command.order_id)
        final = observer.final(command_id)
        copies = landed.get(command_id)
        if final is None or not copies or any(s.transient for s in observer.results[command_id]):
            left_out.add(group)
            continue
        accepted = getattr(final.event, "reason", None) is None
        moved.setdefault(group, []).append((min(copies), command_id, accepted))
    problems = []
    counts = {
        "orders moved twice, checked by offset": len(moved.keys() - left_out),
        "orders moved twice, left out": len(left_out),
    }
    for (kind, order_id), moves in moved.items():
        if (kind, order_id) in left_out:
            continue
        moves.sort()
        winners = [command_id for _, command_id, won in moves if won]
        if winners and winners[0] != moves[0][1]:
            problems.append(
                f"order {order_id}: {kind} {winners[0]} accepted, but {moves[0][1]} came first"
            )
    return problems[:20], counts


def _settled(
    workload: Workload, answers: dict[str, ResultEvent], moves: list[Record], woven: int
) -> str:
    """The holders' part of the setup, in a line."""
    holders = set(workload.shop.holders)
    held = [
        r
        for r in workload.setup_commands
        if isinstance(r.command, PlaceOrder) and r.command.user_id in holders
    ]
    placed = [r for r in held if isinstance(answers.get(r.command_id), OrderPlaced)]
    racing = [r for r in held if r.expected is Expected.SCARCE]
    racing_placed = [r for r in placed if r.expected is Expected.SCARCE]
    ships = sum(isinstance(r.command, ShipOrder) for r in moves)
    return (
        f"holders' orders: {len(placed)} of {len(held)} placed ({len(racing_placed)} of the "
        f"{len(racing)} racing for contested stock), then {ships} shipped and "
        f"{len(moves) - ships} cancelled in the setup; {woven} cancels and ships (duplicates "
        f"included) woven into the stream"
    )


def _describe_moves(moves: dict[str, int]) -> list[str]:
    """`Report.moves`, a line per command type."""
    lines = []
    for kind in ("CancelOrder", "ShipOrder"):
        outcomes = [
            f"{count} {name.removeprefix(kind + ' ')}"
            for name, count in moves.items()
            if name.startswith(kind + " ") and not name.endswith((" records", " commands"))
        ]
        lines.append(
            f"{kind}: {moves.get(kind + ' records', 0)} records, "
            f"{moves.get(kind + ' commands', 0)} commands: {', '.join(outcomes)}"
        )
    lines.append(
        f"orders with two cancels or two ships: "
        f"{moves.get('orders moved twice, checked by offset', 0)} checked that the first by "
        f"offset was accepted, {moves.get('orders moved twice, left out', 0)} left out (sent "
        f"again after temporarily_unavailable)"
    )
    return lines


def _moves(workload: Workload, outcomes: dict[str, ResultEvent]) -> dict[str, int]:
    """The stream's cancels and ships: records, commands and outcomes, per type."""
    tally: Counter[str] = Counter()
    for record in workload.stream:
        if isinstance(record.command, CancelOrder | ShipOrder):
            tally[f"{type(record.command).__name__} records"] += 1
    for command_id, record in workload.commands.items():
        if not isinstance(record.command, CancelOrder | ShipOrder):
            continue
        kind = type(record.command).__name__
        tally[f"{kind} commands"] += 1
        event = outcomes.get(command_id)
        if event is not None:
            tally[f"{kind} {getattr(event, 'reason', None) or 'accepted'}"] += 1
    return dict(sorted(tally.items()))


def write_logs(report: Report, servers: ChaosServers, path: Path) -> None:
    path.write_text("\n".join([report.line(), *report.problems, *report.notes, *servers.log]))
