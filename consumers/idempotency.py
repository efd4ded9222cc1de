"""Idempotency, decided for a batch: which commands run, and what the others are answered.

A command whose `command_id` the ledger holds (spent) is not run again: the same payload
gets the stored result again, byte for byte and with its `event_id` (a replay); another
payload under that id gets `idempotency_conflict`. Within a batch, the first command of
an id runs and its repeats are answered the same way against it. A command that was
answered `temporarily_unavailable` spends nothing, so its repeats get that answer too
and a later delivery runs it. Plain Python over what the ledger returned: the applier
(`consumers.applier`) loads the spent ids and records the new ones in its transaction.
"""

from collections.abc import Mapping, Sequence

from shopflow.consumers.decoding import DecodedCommand
from shopflow.consumers.outcomes import Outcome, OutcomeKind, conflict, replayed, unavailable
from shopflow.domain.clock import Clock
from shopflow.persistence.ledger import LedgerEntry


class BatchIdempotency:
    """One batch's commands against the ledger entries of their ids that were spent."""

    def __init__(
        self,
        batch: Sequence[DecodedCommand],
        spent: Mapping[str, LedgerEntry],
        clock: Clock,
    ) -> None:
        self._batch = batch
        self._spent = spent
        self._clock = clock
        first_of_id: dict[str, DecodedCommand] = {}
        for cmd in batch:
            first_of_id.setdefault(cmd.command_id, cmd)
        self.to_run = [c for c in first_of_id.values() if c.command_id not in spent]
        """The commands to run: the first of each id not spent, in the batch's order."""

    def answers(self, ran: Mapping[str, Outcome]) -> tuple[list[Outcome], list[LedgerEntry]]:
        """Given the outcomes of `to_run` by command_id: one outcome per command of the
        batch, in its order, and the ledger entries that spend the ids that ran."""
        outcomes: list[Outcome] = []
        # Per id: the payload that spent it (or that ran first, in this batch) and the
        # answer that payload gets; a repeat in the batch is answered against it.
        references: dict[str, tuple[bytes, Outcome]] = {}
        to_record: list[LedgerEntry] = []
        for cmd in self._batch:
            if cmd.command_id in references:
                outcomes.append(self._answer_repeat(cmd, *references[cmd.command_id]))
                continue
            stored = self._spent.get(cmd.command_id)
            if stored is not None:
                replay = _stored_answer(cmd, stored)
                references[cmd.command_id] = (stored.payload_sha256, replay)
                outcomes.append(self._answer_repeat(cmd, stored.payload_sha256, replay))
                continue
            answer = ran[cmd.command_id]
            if answer.kind is not OutcomeKind.UNAVAILABLE:
                to_record.append(
                    LedgerEntry(
                        cmd.command_id,
                        cmd.route.type_name,
                        cmd.entity_key,
                        cmd.payload_sha256,
                        answer.event_id,
                        answer.result_topic,
                        answer.value.decode(),
                    )
                )
            references[cmd.command_id] = (cmd.payload_sha256, answer)
            outcomes.append(answer)
        return outcomes, to_record

    def _answer_repeat(
        self, cmd: DecodedCommand, payload_sha256: bytes, answer: Outcome
    ) -> Outcome:
        """A command whose id was spent (or ran earlier in this batch) by the payload
        `payload_sha256`, which got `answer`: the same answer again for the same
        payload, `idempotency_conflict` for any other."""
        if cmd.payload_sha256 != payload_sha256:
            return conflict(cmd, self._clock)
        if answer.kind is OutcomeKind.UNAVAILABLE:
            return unavailable(cmd, self._clock)
        return replayed(cmd, answer)


def _stored_answer(cmd: DecodedCommand, stored: LedgerEntry) -> Outcome:
    """The stored result of a spent id, as it was."""
    return Outcome(
        command_id=cmd.command_id,
        kind=OutcomeKind.REPLAYED,
        result_topic=stored.result_topic or cmd.route.result_topic,
        key=stored.entity_key,
        event_id=stored.event_id,
        value=stored.result_json.encode(),
    )
