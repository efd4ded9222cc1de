"""A batch of decoded commands applied to PostgreSQL in one transaction, each command
isolated, exactly one result per command.

The transaction records the batch's dead letters (their outbox), loads the spent ids
(`consumers.idempotency` says what runs and what is replayed), runs the new commands as
one set through their binding (`consumers.bindings`), spends their ids with their results
in one statement, and commits; results are published only after that, by the pipeline.
A duplicate spent meanwhile by a concurrent transaction (two consumers of one partition
during a rebalance) rolls the batch back, and its retry replays it.

Failures (`consumers.failures` tells transient from poison; every retry is a
`consumers.retry.RetryPolicy`, `TRANSACTION_RETRY`):
- a business rejection changes nothing (handlers decide before writing);
- a transient error of the set (deadlock, lock timeout) retries the set once, then each
  command alone in its own savepoint; one that still fails is `temporarily_unavailable`
  and spends nothing;
- a transient error of the transaction (lost connection, failed commit, no writable
  primary while a replicated PostgreSQL fails over) retries the batch, for at least its
  attempts and then until `outage_wait_s` after the first failure (SHOPFLOW_DB_OUTAGE_WAIT_S:
  an outage waited out, not answered); after that every command is
  `temporarily_unavailable` (or, with dead letters to record first, the error is raised
  and the batch redelivered). A COMMIT that failed has an unknown outcome (the server may
  have committed before the connection broke): the retry loads the spent ids again, and
  the ledger makes a committed batch a replay;
- any other error is raised as `BatchFailed` after the batch's attempts: the pipeline
  isolates the record that fails.

The ids answered `temporarily_unavailable` are then announced (`Ledger.
announce_unavailable`) in a short transaction of their own, so that an HTTP request
waiting for one of them answers 503 at once. Best effort, bounded by `ANNOUNCE_TIMEOUT_S`:
when the database is what failed, the announcement fails too, and the gateway, which
cannot read the ledger either, answers 503 by itself (shopflow.gateway).
"""

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shopflow.consumers.bindings import Answer, Binding, CommandBatch, EventMeta, seal
from shopflow.consumers.decoding import DecodedCommand
from shopflow.consumers.failures import TransientError, is_transient
from shopflow.consumers.handlers import BINDINGS
from shopflow.consumers.idempotency import BatchIdempotency
from shopflow.consumers.locking import lock_rows
from shopflow.consumers.outcomes import Outcome, OutcomeKind, outcome, unavailable
from shopflow.consumers.ports import Database, UnitOfWork
from shopflow.consumers.retry import RetryPolicy
from shopflow.domain.clock import Clock, utc_now
from shopflow.domain.errors import Rejected
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter

log = logging.getLogger(__name__)

# A transaction, a set of commands, a command alone: four attempts in all, 50 ms after
# the first failure, doubling up to 0.5 s. The transaction's tries go on while the database
# is away, up to the applier's `outage_wait_s`.
TRANSACTION_RETRY: Final = RetryPolicy(attempts=4, first_pause_s=0.05, max_pause_s=0.5)
# A set of commands is tried twice before its commands are tried one at a time.
_SET_ATTEMPTS: Final = 2
# How long the announcement of `temporarily_unavailable` ids may hold up the batch.
ANNOUNCE_TIMEOUT_S: Final = 1.0


def _random_uuids(count: int) -> list[uuid.UUID]:
    """`count` version-4 UUIDs, as `uuid.uuid4()` makes them, from one read of the OS's
    randomness rather than one system call each."""
    entropy = os.urandom(16 * count)
    return [uuid.UUID(bytes=entropy[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


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
        retry: RetryPolicy = TRANSACTION_RETRY,
        outage_wait_s: float = 0.0,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._retry = retry
        # Only the transaction as a whole waits an outage out: a set or a command that
        # fails on a live connection (a lock timeout, a deadlock) is not an outage.
        self._batch_retry = retry.with_deadline(outage_wait_s)
        # Fault injection for tests of crash recovery: the last step of the transaction
        # before its commit, and the first after it (before anything is published).
        self._before_commit = before_commit
        self._after_commit = after_commit

    async def apply(
        self,
        batch: Sequence[DecodedCommand],
        dead_letters: Sequence[DeadLetterEntry] = (),
        *,
        retry_poison: bool = True,
    ) -> Applied:
        """Apply `batch` and record `dead_letters` in one transaction.

        A transient failure of the transaction is retried by the policy; so is any
        other failure unless `retry_poison` is False (the pipeline's halves of a batch
        it split: that failure has repeated already)."""
        if not batch and not dead_letters:
            return Applied([], [])
        try:
            async for attempt in self._batch_retry.retrying(
                retry_if=lambda exc: retry_poison or is_transient(exc),
                wait_out_if=is_transient,
                log=log,
                what=f"batch of {len(batch)} commands and {len(dead_letters)} dead letters",
            ):
                with attempt:
                    async with self._database.begin() as uow:
                        recorded = await uow.dead_letters.record(dead_letters)
                        spent = await uow.ledger.load(c.command_id for c in batch)
                        idempotency = BatchIdempotency(batch, spent, self._clock)
                        ran = await self._run_new(uow, idempotency.to_run)
                        outcomes, to_record = idempotency.answers(ran)
                        newly_spent = await uow.ledger.record(to_record)
                        if len(newly_spent) < len(to_record):
                            raise SpentMeanwhile(
                                f"{len(to_record) - len(newly_spent)} command ids of the "
                                "batch were spent by a concurrent transaction; the retry "
                                "replays them"
                            )
                        if self._before_commit is not None:
                            await self._before_commit()
        except Exception as exc:
            if not is_transient(exc):
                raise BatchFailed(f"batch of {len(batch)} commands failed") from exc
            if dead_letters:
                raise
            log.error(
                "batch of %d commands outlasted its retries: temporarily_unavailable",
                len(batch),
            )
            outcomes = [unavailable(cmd, self._clock) for cmd in batch]
            await self._announce_unavailable(outcomes)
            return Applied(outcomes, [])
        if self._after_commit is not None:
            await self._after_commit()
        await self._announce_unavailable(outcomes)
        return Applied(outcomes, recorded)

    async def _announce_unavailable(self, outcomes: Sequence[Outcome]) -> None:
        ids = list(
            dict.fromkeys(o.command_id for o in outcomes if o.kind is OutcomeKind.UNAVAILABLE)
        )
        if not ids:
            return
        try:
            # A transaction that changes no row: cancelling it, even at its COMMIT,
            # cannot leave anything half-done.
            async with asyncio.timeout(ANNOUNCE_TIMEOUT_S), self._database.begin() as uow:
                await uow.ledger.announce_unavailable(ids)
        except Exception as exc:  # best effort: the gateway falls back on its own
            log.warning("could not announce %d temporarily_unavailable ids: %r", len(ids), exc)

    async def replace_dead_letter(self, entry: DeadLetterEntry) -> StoredDeadLetter:
        """Record the letter of a record isolated as poison, in a transaction of its own."""
        async with self._database.begin() as uow:
            return await uow.dead_letters.replace(entry)

    async def _run_new(
        self, uow: UnitOfWork, commands: Sequence[DecodedCommand]
    ) -> dict[str, Outcome]:
        """Outcomes of the new commands, decided in offset order by their type's binding
        (the rows it locks, then its handler), as one set in one savepoint.

        A set that fails transiently (a lock timeout, a deadlock) is rolled back and
        tried once more, after a pause: its rows are locked in the one global order
        (`consumers.locking`), so a second try usually passes. If that fails too, each
        command is run alone (the same binding, on a batch of one) with the attempts
        the policy has left. Run alone, in offset order, a batch's commands take their
        locks command by command, which is not the global order; that is why it is the
        last resort. Any other error is raised: it is poison, and the pipeline isolates
        it."""
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
        set_attempts = min(_SET_ATTEMPTS, self._retry.attempts)
        batch = CommandBatch([c.command for c in commands], decided_at)
        try:
            async for attempt in self._retry.with_attempts(set_attempts).retrying(
                retry_if=is_transient, log=log, what=f"set of {len(commands)} commands"
            ):
                with attempt:
                    async with uow.savepoint():
                        locked = await lock_rows(uow, binding.locks, batch.commands)
                        answers = await binding.handler(uow, batch, locked)
        except Exception as exc:
            if not is_transient(exc):
                raise
            left = self._retry.attempts - set_attempts
            return {
                c.command_id: await self._run_alone(uow, c, meta, binding, left)
                for c, meta in zip(commands, metas, strict=True)
            }
        return {
            c.command_id: self._answered(c, meta, answer)
            for c, meta, answer in zip(commands, metas, answers, strict=True)
        }

    async def _run_alone(
        self,
        uow: UnitOfWork,
        cmd: DecodedCommand,
        meta: EventMeta,
        binding: Binding[Any],
        attempts: int,
    ) -> Outcome:
        """One command, in its own savepoint, tried up to `attempts` times while it fails
        transiently; then `temporarily_unavailable`. (If the connection itself is gone,
        the rollback raises too, and the batch retries.)"""
        if attempts < 1:
            return unavailable(cmd, self._clock)
        alone = CommandBatch([cmd.command], meta.occurred_at)
        try:
            async for attempt in self._retry.with_attempts(attempts).retrying(
                retry_if=is_transient, log=log, what=f"command {cmd.command_id} alone"
            ):
                with attempt:
                    async with uow.savepoint():
                        locked = await lock_rows(uow, binding.locks, alone.commands)
                        [answer] = await binding.handler(uow, alone, locked)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return unavailable(cmd, self._clock)
        return self._answered(cmd, meta, answer)

    def _answered(self, cmd: DecodedCommand, meta: EventMeta, answer: Answer) -> Outcome:
        kind = OutcomeKind.REJECTED if isinstance(answer, Rejected) else OutcomeKind.ACCEPTED
        return outcome(cmd, kind, seal(cmd.route, cmd.command, answer, meta))
