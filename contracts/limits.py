"""Bounds that the contract enforces (CONTRACT.md, "Commands" and "Envelope")."""

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
