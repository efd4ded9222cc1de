"""Ids no other test (or earlier run) uses, so that tests share the servers without
cleaning up after each other."""

import itertools
import secrets

_counter = itertools.count(1)
RUN_ID = secrets.token_hex(3)  # this test run's, in every command id it makes


def new_command_id(label: str = "cmd") -> str:
    """A command_id no other test (or earlier run) uses."""
    return f"{label}-{RUN_ID}-{next(_counter)}-{secrets.token_hex(4)}"


def new_entity_id() -> int:
    """A random positive 63-bit id: tests never collide, so nothing needs cleaning."""
    return secrets.randbelow(2**62) + 1
