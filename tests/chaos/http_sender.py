"""Sends the stream's HTTP records as a client of the HTTP side would, retrying as one
would, with the same `Idempotency-Key`, until a final answer:

- 503 (`temporarily_unavailable`: Kafka away, or the workers' answer): again after its
  `Retry-After`;
- 202 (no result within the wait): `GET /commands/{id}?wait_ms=` once, then (still none:
  a `temporarily_unavailable` is not kept in the ledger) the request again;
- no answer (the connection refused or cut: the serve killed, or restarting): again
  after a pause that doubles (with jitter) up to MAX_PAUSE_S;
- 429, and any other 5xx (the contract has none but 503: the run counts it a problem):
  counted, the first kept as examples, and again after a second.

At most MAX_IN_FLIGHT requests are in flight, over SHARDS clients of their own (a
request waits for its answer for seconds, so a few hundred are in flight at 25/s; and
httpx's pool costs time in the number of its connections times that of the requests
waiting for one). A final answer is a 2xx or another 4xx; each is kept, and
checked against the result the topic has for its command (`answer_problems`): the same
`event_id`, and the status `http_status` gives that result. A request without a final
answer after RETRY_BUDGET_S is given up, and its command handed to the Kafka path
(`give_up`), as a command answered `temporarily_unavailable` there is sent again: "not
applied", whose outcome is whatever the topic then has.
"""

import asyncio
import contextlib
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from shopflow.contracts.events import parse_event
from shopflow.contracts.http_writes import IDEMPOTENCY_KEY_HEADER, http_status
from shopflow.queries.auth import SCOPE_POINTS_CHARGE, SCOPE_READ
from shopflow.settings import Settings
from shopflow.tokens import local_signing_key, sign_token
from tests.chaos.observer import Observer
from tests.chaos.over_http import PAYMENTS_SUBJECT
from tests.chaos.workload import Record

WAIT_S: Final = 5  # Prefer: wait
POLL_WAIT_MS: Final = 5_000  # GET /commands/{id}?wait_ms= after a 202
REQUEST_TIMEOUT_S: Final = 30.0  # above the wait and the gateway's bounded send (10 s)
FIRST_PAUSE_S: Final = 0.25  # after no answer; doubled each time
MAX_PAUSE_S: Final = 4.0
AGAIN_AFTER_S: Final = 1.0  # without a Retry-After
RETRY_BUDGET_S: Final = 120.0
TOKEN_TTL_S: Final = 6 * 3600  # longer than any run
SHARDS: Final = 8
PER_SHARD: Final = 64
MAX_IN_FLIGHT: Final = SHARDS * PER_SHARD
EXAMPLES: Final = 5

# The tally's names.
RETRY_503: Final = "503"
RETRY_202: Final = "202"
RETRY_NO_ANSWER: Final = "no answer"
RETRY_429: Final = "429"
RETRY_OTHER_5XX: Final = "other 5xx"


@dataclass(frozen=True)
class HttpAnswer:
    """A final answer: its status and the `event_id` of the result it carried (None if
    it carried none: a 422 `idempotency_conflict`, a 4xx of the request itself)."""

    command_id: str
    status: int
    event_id: str | None
    polled: bool  # from GET /commands/{id}, its status that of the result
    at: float  # time.monotonic() when it came


class HttpSender:
    def __init__(self, url: str, settings: Settings, give_up: Callable[[Record], None]) -> None:
        self._shards = [
            (
                httpx.AsyncClient(
                    base_url=url,
                    timeout=httpx.Timeout(REQUEST_TIMEOUT_S, pool=None),
                    limits=httpx.Limits(max_connections=PER_SHARD),
                ),
                asyncio.Semaphore(PER_SHARD),
            )
            for _ in range(SHARDS)
        ]
        self._jitter = random.Random()
        self._settings = settings
        self._key = local_signing_key(settings)
        self._tokens: dict[str, str] = {}
        self._give_up = give_up
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: Counter[str] = Counter()  # requests without a final answer, by id
        self.records = 0
        self.commands: set[str] = set()
        self.requests = 0
        self.retries: Counter[str] = Counter()
        self.given_up = 0
        self.answers: list[HttpAnswer] = []
        self.examples: list[str] = []  # of the odd answers (other 5xx)
        self.no_answers: Counter[str] = Counter()  # by httpx's error
        self.queued_s: list[float] = []  # each request's wait for a place in flight
        self.answered_s: list[float] = []  # each response's time, final or not

    def send(self, record: Record) -> None:
        assert record.http is not None
        self.records += 1
        self.commands.add(record.command_id)
        self._waiting[record.command_id] += 1
        task = asyncio.create_task(self._deliver(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def latencies(self) -> str:
        """The requests' waits for a place in flight and for their responses, in a line."""

        def spread(values: list[float]) -> str:
            ordered = sorted(values) or [0.0]
            p50, p99 = (ordered[int(q * (len(ordered) - 1))] for q in (0.5, 0.99))
            return f"p50 {p50:.2f} s, p99 {p99:.2f} s, longest {ordered[-1]:.2f} s"

        return (
            f"over HTTP, {len(self.answered_s)} responses (final or not): waited for a place "
            f"in flight {spread(self.queued_s)}; came in {spread(self.answered_s)}"
        )

    def waiting_for(self, command_id: str) -> bool:
        """Whether a request of this command still waits for its final answer."""
        return self._waiting[command_id] > 0

    async def drain(self, timeout: float) -> bool:
        """Wait for every request to have its final answer (or be given up); whether all
        had within `timeout`."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def close(self) -> int:
        """Cancel what is still waiting; how many were."""
        waiting = list(self._tasks)
        for task in waiting:
            task.cancel()
        for task in waiting:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client, _ in self._shards:
            await client.aclose()
        return len(waiting)

    def _token(self, subject: str) -> str:
        token = self._tokens.get(subject)
        if token is None:
            settings = self._settings
            scopes = [SCOPE_POINTS_CHARGE, SCOPE_READ] if subject == PAYMENTS_SUBJECT else []
            token = sign_token(
                self._key,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                subject=subject,
                scopes=scopes,
                ttl_s=TOKEN_TTL_S,
            )
            self._tokens[subject] = token
        return token

    async def _deliver(self, record: Record) -> None:
        try:
            await self._answered(record)
        finally:
            self._waiting[record.command_id] -= 1

    async def _answered(self, record: Record) -> None:
        """Sends `record`'s request until it has a final answer (kept), or gives it up."""
        call = record.http
        assert call is not None
        authorization = {"Authorization": f"Bearer {self._token(call.subject)}"}
        headers = authorization | {IDEMPOTENCY_KEY_HEADER: call.key, "Prefer": f"wait={WAIT_S}"}
        client, in_flight = self._shards[zlib.crc32(call.key.encode()) % SHARDS]
        deadline = time.monotonic() + RETRY_BUDGET_S
        pause = FIRST_PAUSE_S
        while True:
            if time.monotonic() > deadline:
                self.given_up += 1
                self._give_up(record)
                return
            self.requests += 1
            queued = time.monotonic()
            try:
                async with in_flight:
                    began = time.monotonic()
                    self.queued_s.append(began - queued)
                    response = await client.request(
                        call.method, call.path, json=call.body, params=call.params, headers=headers
                    )
                    self.answered_s.append(time.monotonic() - began)
            except httpx.TransportError as error:
                self.retries[RETRY_NO_ANSWER] += 1
                self.no_answers[type(error).__name__] += 1
                await asyncio.sleep(pause * self._jitter.uniform(0.5, 1.5))
                pause = min(MAX_PAUSE_S, 2 * pause)
                continue
            status = response.status_code
            if status == 202:
                self.retries[RETRY_202] += 1
                if await self._poll(record.command_id, authorization, client, in_flight):
                    return
                continue
            if status == 503 or status == 429 or status >= 500:
                kind = {503: RETRY_503, 429: RETRY_429}.get(status, RETRY_OTHER_5XX)
                self.retries[kind] += 1
                if kind == RETRY_OTHER_5XX and len(self.examples) < EXAMPLES:
                    self.examples.append(f"{call.method} {call.path}: {status} {response.text}")
                await asyncio.sleep(_retry_after(response))
                continue
            self.answers.append(_answer(record.command_id, status, response, polled=False))
            return

    async def _poll(
        self,
        command_id: str,
        authorization: dict[str, str],
        client: httpx.AsyncClient,
        in_flight: asyncio.Semaphore,
    ) -> bool:
        """GET /commands/{id}?wait_ms=: whether it gave the command's result (kept)."""
        try:
            async with in_flight:
                response = await client.get(
                    f"/commands/{command_id}",
                    params={"wait_ms": POLL_WAIT_MS},
                    headers=authorization,
                )
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        result = response.json()["result"]
        status = http_status(parse_event(json.dumps(result)))
        event_id = result.get("event_id")
        self.answers.append(HttpAnswer(command_id, status, event_id, True, time.monotonic()))
        return True


def _answer(command_id: str, status: int, response: httpx.Response, *, polled: bool) -> HttpAnswer:
    """A final answer's status and event id: the body is the result for a 2xx, else
    `{"error", "result"}`."""
    event_id = None
    with contextlib.suppress(ValueError):
        body: Any = response.json()
        result = body if status < 300 else body.get("result") if isinstance(body, dict) else None
        if isinstance(result, dict):
            event_id = result.get("event_id")
    return HttpAnswer(command_id, status, event_id, polled, time.monotonic())


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(5.0, max(0.2, float(response.headers.get("Retry-After", AGAIN_AFTER_S))))
    except ValueError:
        return AGAIN_AFTER_S


def answer_problems(answers: list[HttpAnswer], observer: Observer) -> tuple[list[str], int, str]:
    """Each final answer against its command's outcome on the result topic: the same
    `event_id`, and the status that result is answered with. The problems, how many
    answers matched, and a line on how long after the topic's result the answers came."""
    problems = []
    matched = 0
    later: list[float] = []
    for answer in answers:
        final = observer.final(answer.command_id)
        if final is None:
            continue  # no outcome: the driver counts it lost
        later.append(answer.at - final.arrived)
        want = http_status(final.event)
        if answer.event_id == str(final.event.event_id) and answer.status == want:
            matched += 1
            continue
        how = "GET /commands" if answer.polled else "answered"
        problems.append(
            f"{answer.command_id}: {how} {answer.status} with event {answer.event_id}; the "
            f"topic has {final.event.event_id} ({type(final.event).__name__}, {want})"
        )
    later.sort()
    line = "over HTTP, the answers came after the result was read from its topic by " + (
        f"{later[len(later) // 2]:.2f} s at the median, {later[int(0.99 * (len(later) - 1))]:.2f}"
        f" s at p99"
        if later
        else "(no answers)"
    )
    return problems[:20], matched, line
