"""What a batch's commands are answered, given the ledger's spent ids (no database)."""

import uuid
from datetime import UTC, datetime

from shopflow.consumers.decoding import DecodedCommand
from shopflow.consumers.idempotency import BatchIdempotency
from shopflow.consumers.outcomes import Outcome, OutcomeKind, outcome, unavailable
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged
from shopflow.persistence.ledger import LedgerEntry
from tests.support.records import decoded_command

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _charge(command_id: str, amount: int = 10, offset: int = 0) -> DecodedCommand:
    return decoded_command(ChargePoints(command_id=command_id, user_id=1, amount=amount), offset)


def _accepted(cmd: DecodedCommand) -> Outcome:
    event = PointsCharged(
        event_id=uuid.uuid4(),
        command_id=cmd.command_id,
        occurred_at=NOW,
        user_id=1,
        amount=10,
        balance=10,
        transaction_id=1,
    )
    return outcome(cmd, OutcomeKind.ACCEPTED, event)


def _spent(cmd: DecodedCommand, answer: Outcome) -> LedgerEntry:
    return LedgerEntry(
        cmd.command_id,
        cmd.route.type_name,
        cmd.entity_key,
        cmd.payload_sha256,
        answer.event_id,
        answer.result_topic,
        answer.value.decode(),
    )


def test_new_ids_run_once_each_and_are_recorded_with_their_answers() -> None:
    a, b, a_again = _charge("a"), _charge("b"), _charge("a", offset=2)
    check = BatchIdempotency([a, b, a_again], {}, lambda: NOW)
    assert check.to_run == [a, b]

    ran = {"a": _accepted(a), "b": _accepted(b)}
    outcomes, to_record = check.answers(ran)

    assert [o.kind for o in outcomes] == [
        OutcomeKind.ACCEPTED,
        OutcomeKind.ACCEPTED,
        OutcomeKind.REPLAYED,
    ]
    assert outcomes[2].event_id == ran["a"].event_id
    assert outcomes[2].value == ran["a"].value
    assert [(e.command_id, e.event_id) for e in to_record] == [
        ("a", ran["a"].event_id),
        ("b", ran["b"].event_id),
    ]


def test_a_spent_id_is_replayed_byte_for_byte_and_another_payload_conflicts() -> None:
    first = _charge("a")
    stored = _accepted(first)
    same, other = _charge("a", offset=1), _charge("a", amount=99, offset=2)
    check = BatchIdempotency([same, other], {"a": _spent(first, stored)}, lambda: NOW)
    assert check.to_run == []

    outcomes, to_record = check.answers({})

    assert to_record == []
    assert outcomes[0].kind is OutcomeKind.REPLAYED
    assert (outcomes[0].event_id, outcomes[0].value) == (stored.event_id, stored.value)
    assert outcomes[1].kind is OutcomeKind.CONFLICT
    assert outcomes[1].reason == "idempotency_conflict"
    # The conflict's answer is the same on every delivery.
    again, _ = BatchIdempotency([other], {"a": _spent(first, stored)}, lambda: NOW).answers({})
    assert again[0].event_id == outcomes[1].event_id


def test_an_unavailable_command_spends_nothing_and_its_repeat_is_unavailable_too() -> None:
    a, a_again = _charge("a"), _charge("a", offset=1)
    check = BatchIdempotency([a, a_again], {}, lambda: NOW)

    outcomes, to_record = check.answers({"a": unavailable(a, lambda: NOW)})

    assert to_record == []
    assert [o.kind for o in outcomes] == [OutcomeKind.UNAVAILABLE, OutcomeKind.UNAVAILABLE]
