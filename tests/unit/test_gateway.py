"""The HTTP entry's decisions without servers: the command id a caller's key becomes,
`Prefer: wait`, the status of each result, and what a request is answered when the
ledger already has its id, has it with another payload, or Kafka cannot be reached."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TypeVar
from uuid import uuid4

import pytest
from aiokafka.errors import KafkaConnectionError

from shopflow.contracts.commands import ChargePoints, Command
from shopflow.contracts.events import (
    OrderPlaced,
    PointsCharged,
    PointsChargeRejected,
    RejectionReason,
    ResultEvent,
)
from shopflow.contracts.http_writes import http_command_id, http_status
from shopflow.contracts.limits import COMMAND_ID_PATTERN, MAX_COMMAND_ID_LENGTH
from shopflow.contracts.topics import ROUTES_BY_TYPE
from shopflow.gateway import CommandGateway, prefer_wait_s
from shopflow.queries.command_results import AnsweredUnavailable, LedgerUnreachable, StoredResult

NOW = "2026-12-07T00:00:00Z"


def test_a_callers_key_is_one_command_id_inside_the_contracts_bounds() -> None:
    import re

    one = http_command_id("storefront", "k-1")

    assert one == http_command_id("storefront", "k-1")
    assert one != http_command_id("mobile", "k-1")  # two callers' keys never meet
    assert one != http_command_id("storefront", "k-2")
    assert len(one) <= MAX_COMMAND_ID_LENGTH
    assert re.fullmatch(COMMAND_ID_PATTERN, one)


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [(None, 5), ("wait=10", 10), ("respond-async, wait=3", 3), ("wait=999", 30), ("x", 5)],
)
def test_prefer_wait_is_bounded(prefer: str | None, seconds: int) -> None:
    assert prefer_wait_s(prefer) == seconds


E = TypeVar("E", bound=ResultEvent)


def _event(cls: type[E], fields: dict[str, object]) -> E:
    envelope = {"event_id": str(uuid4()), "occurred_at": NOW, "command_id": "c"}
    return cls.model_validate_json(json.dumps(envelope | fields, default=dict))


def _charged(command_id: str) -> PointsCharged:
    return _event(
        PointsCharged,
        {
            "event_id": str(uuid4()),
            "command_id": command_id,
            "occurred_at": NOW,
            "user_id": 1,
            "amount": 5,
            "balance": 5,
            "transaction_id": 9,
        },
    )


def test_each_result_has_its_status() -> None:
    def refused(reason: RejectionReason) -> PointsChargeRejected:
        return _event(PointsChargeRejected, {"user_id": 1, "reason": reason.value})

    line = {"product_id": 1, "quantity": 1, "unit_price": 1}
    placed = _event(
        OrderPlaced, {"user_id": 1, "order_id": 3, "items": [line], "total": 1, "balance": 0}
    )
    assert http_status(_charged("c")) == 200
    assert http_status(placed) == 201
    assert http_status(refused(RejectionReason.UNKNOWN_USER)) == 404
    assert http_status(refused(RejectionReason.BALANCE_LIMIT_EXCEEDED)) == 409
    assert http_status(refused(RejectionReason.IDEMPOTENCY_CONFLICT)) == 422
    assert http_status(refused(RejectionReason.TEMPORARILY_UNAVAILABLE)) == 503


class _Ledger:
    """`stored` now; `first_look` raised by the look before sending, `waited` by the wait
    after it, if given."""

    def __init__(
        self,
        stored: StoredResult | None = None,
        *,
        first_look: Exception | None = None,
        waited: Exception | None = None,
    ) -> None:
        self.result = stored
        self.first_look = first_look
        self.waited = waited

    @contextlib.asynccontextmanager
    async def watching(self, command_id: str) -> AsyncIterator["_Ledger"]:
        yield self

    async def look(self) -> StoredResult | None:
        if self.first_look is not None:
            raise self.first_look
        return self.result

    async def until(
        self, timeout_s: float, *, looked: bool = False, stop_if_unavailable: bool = False
    ) -> StoredResult | None:
        if self.waited is not None:
            raise self.waited
        return self.result


class _Sender:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[Command] = []
        self.error = error

    async def send(self, command: Command) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(command)


def _stored(command: ChargePoints) -> StoredResult:
    route = ROUTES_BY_TYPE[ChargePoints]
    return StoredResult(
        "ChargePoints",
        "1",
        _charged(command.command_id).model_dump_json(),
        route.fingerprint(command),
    )


COMMAND = ChargePoints(command_id="http-x", user_id=1, amount=5)


def _submit(
    sender: _Sender, ledger: _Ledger, command: Command = COMMAND
) -> tuple[int, dict[str, object], dict[str, str]]:
    gateway = CommandGateway(ledger, sender)  # type: ignore[arg-type]
    answer = asyncio.run(gateway.submit(command, 1))
    return answer.status_code, json.loads(bytes(answer.body)), dict(answer.headers)


def test_a_spent_id_with_the_same_payload_is_answered_from_the_ledger_unsent() -> None:
    sender = _Sender()
    status, body, _ = _submit(sender, _Ledger(_stored(COMMAND)))

    assert (status, body["type"]) == (200, "PointsCharged")
    assert sender.sent == []


def test_a_spent_id_with_another_payload_is_an_idempotency_conflict_unsent() -> None:
    sender = _Sender()
    other = COMMAND.model_copy(update={"amount": 6})
    status, body, _ = _submit(sender, _Ledger(_stored(COMMAND)), other)

    assert (status, body) == (422, {"error": "idempotency_conflict", "result": None})
    assert sender.sent == []


def test_a_send_that_does_not_finish_in_time_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    class Hanging(_Sender):
        async def send(self, command: Command) -> None:
            await asyncio.sleep(60)

    monkeypatch.setattr("shopflow.gateway.SEND_TIMEOUT_S", 0.05)
    status, body, _ = _submit(Hanging(), _Ledger())

    assert (status, body["error"]) == (503, "temporarily_unavailable")


def test_kafka_away_is_503_with_retry_after_and_a_pending_result_is_202() -> None:
    status, body, headers = _submit(_Sender(KafkaConnectionError()), _Ledger())
    assert (status, body["error"], headers["retry-after"]) == (503, "temporarily_unavailable", "1")

    sender = _Sender()
    status, body, headers = _submit(sender, _Ledger())
    assert status == 202
    assert headers["location"] == "/commands/http-x"
    assert sender.sent == [COMMAND]


def test_a_ledger_that_cannot_be_read_before_sending_does_not_stop_the_send() -> None:
    sender = _Sender()
    status, _, _ = _submit(sender, _Ledger(first_look=LedgerUnreachable("refused")))

    assert status == 202
    assert sender.sent == [COMMAND]


@pytest.mark.parametrize(
    "waited",
    [AnsweredUnavailable("http-x"), LedgerUnreachable("refused")],
    ids=lambda error: type(error).__name__,
)
def test_an_unavailable_answer_or_an_unreadable_ledger_is_503(waited: Exception) -> None:
    status, body, headers = _submit(_Sender(), _Ledger(waited=waited))

    assert (status, body["error"], headers["retry-after"]) == (503, "temporarily_unavailable", "1")
    assert body["result"] is None
