"""Users: an id is registered once."""

from collections.abc import Sequence, Set
from dataclasses import dataclass

from shopflow.contracts.commands import RegisterUser
from shopflow.domain.errors import Rejected, UserExists


@dataclass(frozen=True)
class NewUser:
    user_id: int
    name: str


def decide_registrations(
    registered: Set[int], commands: Sequence[RegisterUser]
) -> list[int | Rejected]:
    """The user id each registration creates, or why not, in offset order: an id that
    is taken (before the batch, or by an earlier command of it) is `user_exists`."""
    taken = set(registered)
    decisions: list[int | Rejected] = []
    for cmd in commands:
        if cmd.user_id in taken:
            decisions.append(UserExists(f"user {cmd.user_id} exists"))
            continue
        taken.add(cmd.user_id)
        decisions.append(cmd.user_id)
    return decisions
