"""What the applier and the command handlers need from storage, as protocols: PostgreSQL
implements them in `persistence`, and unit tests implement them in memory
(`tests/support/fakes.py`).

A `UnitOfWork` is one open transaction: the repositories the handlers use, the ledger
and dead-letter records the applier uses, and savepoints. `Database.begin()` opens one;
leaving it commits, an exception rolls it back. Which SQL any of it runs is
`persistence`'s business alone.
"""

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.order_lifecycle import StoredOrder
from shopflow.domain.orders import NewOrder
from shopflow.domain.payment import PaymentGateway
from shopflow.domain.points import PointTransaction
from shopflow.domain.users import NewUser
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.persistence.ledger import LedgerEntry


class Users(Protocol):
    async def existing(self, user_ids: Sequence[int]) -> set[int]: ...
    async def add_all(self, users: Sequence[NewUser]) -> int:
        """Insert (user id, name) rows; returns how many were new."""
        ...


class Points(Protocol):
    async def open_accounts(self, user_ids: Sequence[int]) -> None: ...
    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]: ...
    async def set_balances(self, balances: Mapping[int, int]) -> None: ...
    async def record_transactions(self, rows: Sequence[PointTransaction]) -> list[int]: ...


class Products(Protocol):
    async def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]: ...
    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]: ...
    async def add_all(self, created: Sequence[Product]) -> int:
        """Insert new products; returns how many were new."""
        ...

    async def update_all(self, changed: Sequence[Product]) -> None: ...
    async def set_stocks(self, changed: Sequence[Product]) -> None: ...


class Carts(Protocol):
    async def lines_of_users_for_update(
        self, user_ids: Sequence[int]
    ) -> dict[int, list[CartLine]]: ...
    async def set_quantities(self, quantities: Mapping[tuple[int, int], int]) -> None:
        """Set (user id, product id) lines to their units; 0 deletes the line."""
        ...


class Orders(Protocol):
    async def add_many(self, placed: Sequence[NewOrder]) -> list[int]:
        """Record the orders and their lines; their order ids, in the same order."""
        ...

    async def lock_many(self, order_ids: Sequence[int]) -> dict[int, StoredOrder]:
        """The orders that exist among `order_ids`, with their lines, locked."""
        ...

    async def record_moves(self, moved: Sequence[StoredOrder], at: datetime) -> None:
        """Write each order's new status; `at` is when it was cancelled or shipped."""
        ...


class Ledger(Protocol):
    async def load(self, command_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries of those ids that are spent."""
        ...

    async def record(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Spend the ids with their results; returns those spent now, not meanwhile by
        another transaction."""
        ...

    async def announce_unavailable(self, command_ids: Sequence[str]) -> None:
        """Say, on commit, that these ids were answered `temporarily_unavailable`."""
        ...


class DeadLetterRecords(Protocol):
    async def record(self, entries: Sequence[DeadLetterEntry]) -> list[StoredDeadLetter]: ...
    async def replace(self, entry: DeadLetterEntry) -> StoredDeadLetter: ...


class UnitOfWork(Protocol):
    @property
    def users(self) -> Users: ...
    @property
    def points(self) -> Points: ...
    @property
    def products(self) -> Products: ...
    @property
    def carts(self) -> Carts: ...
    @property
    def orders(self) -> Orders: ...
    @property
    def payments(self) -> PaymentGateway: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def dead_letters(self) -> DeadLetterRecords: ...

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        """A nested transaction: released on leaving, rolled back on an exception."""
        ...


class Database(Protocol):
    def begin(self) -> AbstractAsyncContextManager[UnitOfWork]: ...
