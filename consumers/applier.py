"""Applies a batch of decoded commands to PostgreSQL: one transaction per batch, each
command isolated, exactly one result per command.

Per batch: look up which command_ids are spent, in one statement, and replay their
stored results (or answer `idempotency_conflict` when the payload differs); run the
others through their type's handler as one set, in offset order, in a savepoint; spend
their ids with their results in one statement; commit. If a concurrent transaction
spent one of those ids meanwhile (a duplicate consumed twice during a rebalance), the
batch is rolled back and retried, and the retry replays it. Results are published only
after the commit. The transaction is reached through the `consumers.ports` protocols
only, so all of this is unit-tested in memory; the SQL lives in `persistence`.

The batch's dead letters are recorded in the same transaction (the outbox for them), and
what is recorded is returned for publishing: a redelivered batch republishes the letters
of its first delivery, never new ones.

Failures, as DESIGN.md promises them (`consumers.failures` tells transient from poison):
- a business rejection changes nothing (handlers decide before writing) and is recorded
  as its result;
- a transient error in the set (deadlock, lock timeout) rolls the set back, and the set
  is tried once more; then its commands are run one at a time, by the same handler on a
  batch of one, each in its own savepoint, up to 1 + `retries` attempts in all; a
  command that still fails is answered `temporarily_unavailable` and its id is not
  spent;
- a transient error of the whole transaction (lost connection, failed commit) retries the
  whole batch up to `retries` more times (nothing of it was kept); then every command of
  the batch is answered `temporarily_unavailable`, or, when the batch has dead letters
  (which must be recorded before they are published), the error is raised and the batch
  is redelivered later;
- any other error (poison: it will fail again the same way) rolls the transaction back
  and, after the batch's retries, is raised as `BatchFailed`: the pipeline then splits the
  batch until the failing record is alone, and dead-letters it.
"""

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shopflow.consumers.decoding import DecodedCommand
from shopflow.consumers.failures import TransientError, is_transient
from shopflow.consumers.handlers import BINDINGS
from shopflow.consumers.ports import Database, UnitOfWork
from shopflow.consumers.routes import Answer, Binding, EventMeta
from shopflow.contracts.events import RejectionReason, ResultEvent
from shopflow.domain.errors import Rejected
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.persistence.ledger import LedgerEntry

log = logging.getLogger(__name__)

# Namespace of the deterministic ids of conflict answers (same conflicting command, same id).
_CONFLICT_NAMESPACE = uuid.UUID("6f1d2a43-5c1e-4d0b-9a57-2b8f0e3c9d11")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _random_uuids(count: int) -> list[uuid.UUID]:
    """`count` version-4 UUIDs, as `uuid.uuid4()` makes them, from one read of the OS's
    randomness rather than one system call each."""
    entropy = os.urandom(16 * count)
    return [uuid.UUID(bytes=entropy[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Outcome:
    """The result of one command, serialized and ready to publish."""

    command_id: str
    kind: OutcomeKind
    result_topic: str  # the contract's topic name; the publisher applies any prefix
    key: str
    event_id: uuid.UUID
    value: bytes
    # Why a command was refused (rejected, conflict, unavailable), for the log; None when
    # accepted, and for a replay (its stored answer is republished as it was, unread).
    reason: RejectionReason | None = None


def _outcome(cmd: DecodedCommand, kind: OutcomeKind, event: ResultEvent) -> Outcome:
    return Outcome(
        command_id=cmd.command_id,
        kind=kind,
        result_topic=cmd.route.result_topic,
        key=cmd.entity_key,
        event_id=event.event_id,
        value=event.model_dump_json().encode(),
        reason=getattr(event, "reason", None),  # every *Rejected event has one
    )


@dataclass(frozen=True)
class Applied:
    """A committed batch: one outcome per command, in the batch's order, and the dead
    letters as recorded."""

    outcomes: list[Outcome]
    dead_letters: list[StoredDeadLetter]


class BatchFailed(Exception):
    """A batch failed on every attempt with an error that is not transient."""


class SpentMeanwhile(TransientError):
    """A concurrent transaction spent a command_id of this batch after it looked: roll
    back and retry, and the retry replays that command."""


class BatchApplier:
    def __init__(
        self,
        database: Database,
        *,
        clock: Clock = utc_now,
        retries: int = 3,
        backoff_seconds: float = 0.05,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._retries = retries
        self._backoff = backoff_seconds
        # Fault injection for tests of crash recovery: the last step of the transaction
        # before its commit, and the first after it (before anything is published).
        self._before_commit = before_commit
        self._after_commit = after_commit

    async def apply(
        self,
        batch: Sequence[DecodedCommand],
        dead_letters: Sequence[DeadLetterEntry] = (),
        *,
        retries: int | None = None,
    ) -> Applied:
        """Apply `batch` and record `dead_letters` in one transaction.

        A transient failure of the transaction is retried up to the applier's `retries`;
        any other failure up to `retries` if given (the pipeline passes 0 for the halves
        of a batch it splits: that failure has repeated already)."""
        if not batch and not dead_letters:
            return Applied([], [])
        attempt = 0
        while True:
            try:
                applied = await self._apply_once(batch, dead_letters)
            except Exception as exc:
                transient = is_transient(exc)
                allowed = self._retries if transient or retries is None else retries
                log.warning(
                    "batch of %d commands and %d dead letters failed (attempt %d of %d, %s)",
                    len(batch),
                    len(dead_letters),
                    attempt + 1,
                    allowed + 1,
                    "transient" if transient else "not transient",
                    exc_info=True,
                )
                if attempt < allowed:
                    await asyncio.sleep(self._backoff * 2**attempt)
                    attempt += 1
                    continue
                if not transient:
                    raise BatchFailed(
                        f"batch of {len(batch)} commands failed {attempt + 1} times"
                    ) from exc
                if dead_letters:
                    raise
                log.error(
                    "batch of %d commands outlasted its retries: temporarily_unavailable",
                    len(batch),
                )
                return Applied([self._unavailable(cmd) for cmd in batch], [])
            if self._after_commit is not None:
                await self._after_commit()
            return applied

    async def replace_dead_letter(self, entry: DeadLetterEntry) -> StoredDeadLetter:
        """Record the letter of a record isolated as poison, in a transaction of its own."""
        async with self._database.begin() as uow:
            return await uow.dead_letters.replace(entry)

    async def _apply_once(
        self, batch: Sequence[DecodedCommand], dead_letters: Sequence[DeadLetterEntry]
    ) -> Applied:
        async with self._database.begin() as uow:
            recorded = await uow.dead_letters.record(dead_letters)
            first_of_id: dict[str, DecodedCommand] = {}
            for cmd in batch:
                first_of_id.setdefault(cmd.command_id, cmd)
            spent = await uow.ledger.load(first_of_id)
            to_run = [c for c in first_of_id.values() if c.command_id not in spent]
            ran = await self._run_new(uow, to_run)

            outcomes: list[Outcome] = []
            # Per id: the payload that spent it (or that ran first, in this batch) and the
            # answer that payload gets; a repeat in the batch is answered against it.
            references: dict[str, tuple[bytes, Outcome]] = {}
            to_record: list[LedgerEntry] = []
            for cmd in batch:
                if cmd.command_id in references:
                    outcomes.append(self._answer_repeat(cmd, *references[cmd.command_id]))
                    continue
                if cmd.command_id in spent:
                    stored = spent[cmd.command_id]
                    replay = self._replay(cmd, stored)
                    references[cmd.command_id] = (stored.payload_sha256, replay)
                    outcomes.append(self._answer_repeat(cmd, stored.payload_sha256, replay))
                    continue
                outcome = ran[cmd.command_id]
                if outcome.kind is not OutcomeKind.UNAVAILABLE:
                    to_record.append(
                        LedgerEntry(
                            cmd.command_id,
                            cmd.route.type_name,
                            cmd.entity_key,
                            cmd.payload_sha256,
                            outcome.event_id,
                            outcome.result_topic,
                            outcome.value.decode(),
                        )
                    )
                references[cmd.command_id] = (cmd.payload_sha256, outcome)
                outcomes.append(outcome)
            newly_spent = await uow.ledger.record(to_record)
            if len(newly_spent) < len(to_record):
                raise SpentMeanwhile(
                    f"{len(to_record) - len(newly_spent)} command ids of the batch were "
                    "spent by a concurrent transaction; the retry replays them"
                )
            if self._before_commit is not None:
                await self._before_commit()
        return Applied(outcomes, recorded)

    async def _run_new(
        self, uow: UnitOfWork, commands: Sequence[DecodedCommand]
    ) -> dict[str, Outcome]:
        """Outcomes of the new commands, decided in offset order by their type's binding (the
        rows it locks, then its handler), as one set in one savepoint.

        A set that fails transiently (a lock timeout, a deadlock) is rolled back and
        tried once more, after a pause: its rows are locked in the one global order
        (`consumers.locking`), so a second try usually passes. If that fails too, each
        command is run alone (the same binding, on a batch of one) with the attempts it
        has left: the two
        tries of the set count as each command's first two, so none gets more than
        1 + `retries`. Run alone, in offset order, a batch's commands take their locks
        command by command, which is not the global order; that is why it is the last
        resort. Any other error is raised: it is poison, and the pipeline isolates it."""
        if not commands:
            return {}
        binding = BINDINGS[type(commands[0].command)]
        if any(BINDINGS[type(c.command)] is not binding for c in commands):
            raise ValueError("a batch holds the commands of one topic")
        decided_at = self._clock()  # one instant for the batch: it is decided at once
        metas = [
            EventMeta(event_id, c.command_id, decided_at)
            for c, event_id in zip(commands, _random_uuids(len(commands)), strict=True)
        ]
        set_attempts = min(2, self._retries + 1)
        for attempt in range(set_attempts):
            try:
                async with uow.savepoint():
                    answers = await binding.run(
                        uow, [(c.command, m) for c, m in zip(commands, metas, strict=True)]
                    )
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning(
                    "batch of %d commands failed transiently (attempt %d of %d as a set)",
                    len(commands),
                    attempt + 1,
                    set_attempts,
                    exc_info=True,
                )
                await asyncio.sleep(self._backoff * 2**attempt)
                continue
            return {
                c.command_id: self._answered(c, meta, answer)
                for c, meta, answer in zip(commands, metas, answers, strict=True)
            }
        left = self._retries + 1 - set_attempts
        return {
            c.command_id: await self._run_alone(uow, c, meta, binding, left)
            for c, meta in zip(commands, metas, strict=True)
        }

    def _answered(self, cmd: DecodedCommand, meta: EventMeta, answer: Answer) -> Outcome:
        if isinstance(answer, Rejected):
            rejected = cmd.route.rejection(
                cmd.command, answer.reason, product_id=answer.product_id, **meta.envelope()
            )
            return _outcome(cmd, OutcomeKind.REJECTED, rejected)
        return _outcome(cmd, OutcomeKind.ACCEPTED, answer)

    async def _run_alone(
        self,
        uow: UnitOfWork,
        cmd: DecodedCommand,
        meta: EventMeta,
        binding: Binding[Any],
        attempts: int,
    ) -> Outcome:
        """One command, in its own savepoint, tried up to `attempts` times while it fails
        transiently; then `temporarily_unavailable`."""
        for attempt in range(attempts):
            try:
                async with uow.savepoint():
                    [answer] = await binding.run(uow, [(cmd.command, meta)])
            except Exception as exc:
                # If the connection itself is gone, the rollback raises too, and the
                # batch retries.
                if not is_transient(exc):
                    raise
                log.warning(
                    "command %s failed (attempt %d of %d alone)",
                    cmd.command_id,
                    attempt + 1,
                    attempts,
                    exc_info=True,
                )
                await asyncio.sleep(self._backoff * 2**attempt)
                continue
            return self._answered(cmd, meta, answer)
        return self._unavailable(cmd)

    def _replay(self, cmd: DecodedCommand, stored: LedgerEntry) -> Outcome:
        """The stored result of a spent id, republished as it was."""
        return Outcome(
            command_id=cmd.command_id,
            kind=OutcomeKind.REPLAYED,
            result_topic=stored.result_topic or cmd.route.result_topic,
            key=stored.entity_key,
            event_id=stored.event_id,
            value=stored.result_json.encode(),
        )

    def _answer_repeat(
        self, cmd: DecodedCommand, payload_sha256: bytes, answer: Outcome
    ) -> Outcome:
        """A command whose id was spent (or ran earlier in this batch) by the payload
        `payload_sha256`, which got `answer`: the same answer again for the same
        payload, `idempotency_conflict` for any other."""
        if cmd.payload_sha256 != payload_sha256:
            return self._conflict(cmd)
        if answer.kind is OutcomeKind.UNAVAILABLE:
            return self._unavailable(cmd)
        return Outcome(
            cmd.command_id,
            OutcomeKind.REPLAYED,
            answer.result_topic,
            answer.key,
            answer.event_id,
            answer.value,
        )

    def _conflict(self, cmd: DecodedCommand) -> Outcome:
        # Deterministic id: a redelivery of the conflicting command repeats the same answer.
        event_id = uuid.uuid5(_CONFLICT_NAMESPACE, f"{cmd.command_id}/{cmd.payload_sha256.hex()}")
        event = cmd.route.rejection(
            cmd.command,
            RejectionReason.IDEMPOTENCY_CONFLICT,
            event_id=event_id,
            command_id=cmd.command_id,
            occurred_at=self._clock(),
        )
        return _outcome(cmd, OutcomeKind.CONFLICT, event)

    def _unavailable(self, cmd: DecodedCommand) -> Outcome:
        event = cmd.route.rejection(
            cmd.command,
            RejectionReason.TEMPORARILY_UNAVAILABLE,
            event_id=uuid.uuid4(),
            command_id=cmd.command_id,
            occurred_at=self._clock(),
        )
        return _outcome(cmd, OutcomeKind.UNAVAILABLE, event)
