"""Bounds that the contract enforces (CONTRACT.md, "Commands" and "Envelope")."""

import re
from typing import Final

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_ENTITY_ID: Final = 2**63 - 1
COMMAND_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_COMMAND_ID_LENGTH: Final = 64

MAX_NAME_LENGTH: Final = 100
MAX_PRICE: Final = 10**9
MAX_STOCK_ADDED: Final = 10**6
MAX_CHARGE_AMOUNT: Final = 10**9
MAX_BALANCE: Final = 10**15
MAX_QUANTITY: Final = 1_000
MAX_ORDER_ITEMS: Final = 100


_DECIMAL_ID: Final = re.compile(r"[1-9][0-9]{0,18}")


def decimal_entity_id(text: str) -> int | None:
    """The entity id `text` writes in plain decimal (no sign, no leading zero, no space),
    or None for anything else."""
    if _DECIMAL_ID.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= MAX_ENTITY_ID else None
