"""The applier's idempotency and failure rules, without a database: the transaction,
its savepoints, the ledger and the dead-letter records are the in-memory fakes of
`consumers.ports` (`tests.support.fakes`), which roll back as PostgreSQL would.

Covered: a new command is applied once and its id spent with its result; a spent id is
replayed (same event) or, with another payload, answered idempotency_conflict; the same
id twice in one batch; transient failures of a command (retried, then
temporarily_unavailable, its id not spent) and of the whole transaction (the batch
retried, past its attempts while an outage lasts); a COMMIT that succeeded but whose
answer was lost (retried: a replay); an id spent meanwhile by a concurrent transaction
(retried, then replayed); poison raised for the pipeline to isolate; dead letters
recorded once, in the batch's transaction.
"""

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shopflow.consumers.applier import TRANSACTION_RETRY, BatchApplier, BatchFailed
from shopflow.consumers.decoding import DecodedCommand, RawRecord
from shopflow.consumers.outcomes import Outcome, OutcomeKind
from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.dead_letters import DeadLetterReason
from shopflow.persistence.dead_letter_store import DeadLetterEntry
from shopflow.persistence.ledger import LedgerEntry
from shopflow.producers.dead_letters import build_dead_letter
from tests.support.fakes import FakeDatabase, FakeState
from tests.support.records import decoded_command

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NO_PAUSES = replace(TRANSACTION_RETRY, first_pause_s=0)
_offsets = iter(range(10**9))


def _charge(command_id: str, amount: int = 10, user_id: int = 1) -> DecodedCommand:
    command = ChargePoints(command_id=command_id, user_id=user_id, amount=amount)
    return decoded_command(command, next(_offsets))


def _shop() -> FakeDatabase:
    database = FakeDatabase(FakeState(users={1: "A"}, balances={1: 0}))
    return database


def _applier(database: FakeDatabase) -> BatchApplier:
    return BatchApplier(database, clock=lambda: NOW, retry=NO_PAUSES)


def _event(outcome: Outcome) -> dict[str, Any]:
    document = json.loads(outcome.value)
    assert isinstance(document, dict)
    return document


async def test_a_new_command_is_applied_once_and_its_id_spent_with_its_result() -> None:
    database = _shop()

    [outcome] = (await _applier(database).apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert _event(outcome)["balance"] == 10
    stored = database.state.ledger["c1"]
    assert (stored.event_id, stored.result_json) == (outcome.event_id, outcome.value.decode())
    assert database.state.transactions == [(1, "charge", 10, "c1")]


async def test_a_spent_id_is_replayed_with_the_same_event_and_changes_nothing() -> None:
    database = _shop()
    applier = _applier(database)
    [first] = (await applier.apply([_charge("c1")])).outcomes

    [again] = (await applier.apply([_charge("c1")])).outcomes

    assert again.kind is OutcomeKind.REPLAYED
    assert (again.event_id, again.value) == (first.event_id, first.value)
    assert database.state.balances == {1: 10}


async def test_a_rejection_is_the_stored_result_and_is_replayed_as_such() -> None:
    database = _shop()
    applier = _applier(database)
    [first] = (await applier.apply([_charge("c1", user_id=9)])).outcomes

    [again] = (await applier.apply([_charge("c1", user_id=9)])).outcomes

    assert first.kind is OutcomeKind.REJECTED
    assert _event(first)["reason"] == "unknown_user"
    assert (again.kind, again.event_id) == (OutcomeKind.REPLAYED, first.event_id)
    assert "c1" in database.state.ledger


async def test_a_spent_id_with_another_payload_is_a_conflict_that_repeats_identically() -> None:
    database = _shop()
    applier = _applier(database)
    await applier.apply([_charge("c1", amount=10)])

    [conflict] = (await applier.apply([_charge("c1", amount=99)])).outcomes
    [repeat] = (await applier.apply([_charge("c1", amount=99)])).outcomes

    assert conflict.kind is OutcomeKind.CONFLICT
    assert _event(conflict)["reason"] == "idempotency_conflict"
    assert repeat.event_id == conflict.event_id  # deterministic: a redelivery repeats it
    assert database.state.balances == {1: 10}


async def test_the_same_id_twice_in_one_batch_is_applied_once() -> None:
    database = _shop()

    first, twin, other = (
        await _applier(database).apply([_charge("c1"), _charge("c1"), _charge("c1", amount=5)])
    ).outcomes

    assert first.kind is OutcomeKind.ACCEPTED
    assert (twin.kind, twin.event_id, twin.value) == (
        OutcomeKind.REPLAYED,
        first.event_id,
        first.value,
    )
    assert other.kind is OutcomeKind.CONFLICT
    assert database.state.balances == {1: 10}


async def test_a_command_failing_transiently_three_times_is_retried_and_applied() -> None:
    database = _shop()
    database.faults.remaining["record_transactions"] = 3  # the set twice, then once alone

    [outcome] = (await _applier(database).apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert database.state.transactions == [(1, "charge", 10, "c1")]


async def test_a_command_failing_four_times_is_unavailable_and_its_id_not_spent() -> None:
    database = _shop()
    database.faults.remaining["record_transactions"] = 4
    applier = _applier(database)

    [outcome] = (await applier.apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert _event(outcome)["reason"] == "temporarily_unavailable"
    assert "c1" not in database.state.ledger  # the id is not spent
    assert database.state.balances == {1: 0}
    assert database.state.announced_unavailable == ["c1"]  # for an HTTP request waiting
    [resent] = (await applier.apply([_charge("c1")])).outcomes
    assert resent.kind is OutcomeKind.ACCEPTED
    assert database.state.balances == {1: 10}
    assert database.state.announced_unavailable == ["c1"]  # an accepted id is not


async def test_a_transient_failure_in_a_set_reruns_its_commands_one_at_a_time() -> None:
    database = _shop()
    database.faults.remaining["set_balances"] = 2  # both tries of the set fail

    outcomes = (await _applier(database).apply([_charge("a"), _charge("b", amount=5)])).outcomes

    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 2
    assert [_event(o)["balance"] for o in outcomes] == [10, 15]
    assert database.state.transactions == [(1, "charge", 10, "a"), (1, "charge", 5, "b")]


async def test_a_failed_commit_is_retried_and_the_batch_applied_once() -> None:
    database = _shop()
    database.faults.remaining["commit"] = 2

    [outcome] = (await _applier(database).apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert database.state.transactions == [(1, "charge", 10, "c1")]
    assert database.transactions == 1


async def test_a_commit_whose_outcome_was_lost_is_retried_and_the_ledger_makes_it_a_replay() -> (
    None
):
    database = _shop()
    database.faults.remaining["commit_outcome_lost"] = 1  # committed, then the answer lost

    outcomes = (await _applier(database).apply([_charge("a"), _charge("b", amount=5)])).outcomes

    # The retry found both ids spent: the results are the ones committed, event ids and
    # all, and nothing was applied twice.
    assert database.transactions == 2
    assert database.state.transactions == [(1, "charge", 10, "a"), (1, "charge", 5, "b")]
    assert database.state.balances == {1: 15}
    assert [o.kind for o in outcomes] == [OutcomeKind.REPLAYED] * 2
    for o in outcomes:
        stored = database.state.ledger[o.command_id]
        assert (o.event_id, o.value.decode()) == (stored.event_id, stored.result_json)


async def test_an_outage_is_waited_out_up_to_the_deadline_and_the_batch_applied() -> None:
    database = _shop()
    database.faults.remaining["commit"] = 12  # far past the 4 attempts
    applier = BatchApplier(database, clock=lambda: NOW, retry=NO_PAUSES, outage_wait_s=60.0)

    [outcome] = (await applier.apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert database.state.transactions == [(1, "charge", 10, "c1")]


async def test_a_transaction_failing_on_every_retry_answers_every_command_unavailable() -> None:
    database = _shop()
    database.faults.remaining["commit"] = 4

    outcomes = (await _applier(database).apply([_charge("a"), _charge("b")])).outcomes

    assert [o.kind for o in outcomes] == [OutcomeKind.UNAVAILABLE] * 2
    assert database.state.ledger == {}
    assert database.state.balances == {1: 0}
    # Announced by a transaction of its own, once the batch's last attempt failed.
    assert database.state.announced_unavailable == ["a", "b"]


async def test_an_announcement_that_fails_leaves_the_answers_as_they_are() -> None:
    database = _shop()
    database.faults.remaining["commit"] = 4
    database.faults.poisoned.add("announce_unavailable")

    outcomes = (await _applier(database).apply([_charge("a"), _charge("a")])).outcomes

    assert [o.kind for o in outcomes] == [OutcomeKind.UNAVAILABLE] * 2
    assert database.state.announced_unavailable == []


async def test_an_id_spent_meanwhile_by_another_transaction_is_retried_and_replayed() -> None:
    database = _shop()
    theirs = LedgerEntry(
        "c1", "ChargePoints", "1", _charge("c1").payload_sha256, uuid.uuid4(), "t", "{}"
    )

    def they_commit(state: FakeState) -> None:  # the same command, consumed elsewhere
        state.ledger["c1"] = theirs
        state.balances[1] += 10

    database.faults.before_record.append(lambda: database.commit_elsewhere(they_commit))

    [outcome] = (await _applier(database).apply([_charge("c1")])).outcomes

    assert outcome.kind is OutcomeKind.REPLAYED
    assert outcome.event_id == theirs.event_id
    assert database.state.balances == {1: 10}  # charged once, by them
    assert database.state.transactions == []  # ours was rolled back
    assert database.transactions == 1  # the retry, which only replayed


async def test_poison_is_raised_after_its_retries_and_leaves_nothing_behind() -> None:
    database = _shop()
    database.faults.poisoned.add("record_transactions")

    with pytest.raises(BatchFailed) as failed:
        await _applier(database).apply([_charge("a"), _charge("b")])

    assert isinstance(failed.value.__cause__, RuntimeError)
    assert database.state.ledger == {}
    assert database.state.balances == {1: 0}
    assert database.transactions == 0


def _dead_letter(offset: int) -> DeadLetterEntry:
    record = RawRecord("shop.points.charge", 0, offset, b"1", b"{nope")
    built = build_dead_letter(
        record, DeadLetterReason.INVALID_JSON, "not JSON", NOW, max_value_bytes=1_000_000
    )
    return DeadLetterEntry(built.letter, record.key, record.value, built.kafka_key, built.value)


async def test_dead_letters_are_recorded_once_and_a_redelivery_gets_the_first_ones() -> None:
    database = _shop()
    applier = _applier(database)
    letter = _dead_letter(7)
    first = (await applier.apply([_charge("c1")], [letter])).dead_letters

    later = build_dead_letter(
        RawRecord("shop.points.charge", 0, 7, b"1", b"{nope"),
        DeadLetterReason.INVALID_JSON,
        "not JSON",
        datetime(2026, 12, 3, tzinfo=UTC),  # received again, a day later
        max_value_bytes=1_000_000,
    )
    again = (
        await applier.apply(
            [_charge("c1")],
            [DeadLetterEntry(later.letter, b"1", b"{nope", later.kafka_key, later.value)],
        )
    ).dead_letters

    assert [d.message_json for d in again] == [d.message_json for d in first]
    assert list(database.state.dead_letters) == [letter.letter.dead_letter_id]


async def test_a_transient_failure_with_dead_letters_is_raised_not_answered() -> None:
    database = _shop()
    database.faults.remaining["commit"] = 4

    with pytest.raises(Exception, match="commit"):
        await _applier(database).apply([_charge("c1")], [_dead_letter(8)])

    assert database.state.dead_letters == {}
