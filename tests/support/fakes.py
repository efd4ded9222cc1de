"""In-memory implementations of `consumers.ports`, for fast tests of the handlers and of
the applier without a database. Integration tests cover the PostgreSQL versions.

The whole database is one `FakeState`; `FakeDatabase.begin()` and `savepoint()` take a
deep copy of it and put it back if their block raises, as a rollback would. `Faults`
sits outside the state (it is not rolled back, like the sequence the integration tests'
fault trigger counts with) and makes named operations raise a transient error.
"""

import copy
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from shopflow.consumers.failures import TransientError
from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.order_lifecycle import OrderStatus, StoredOrder
from shopflow.domain.orders import NewOrder
from shopflow.domain.payment import Payment, PaymentDeclined, Refund
from shopflow.domain.points import PointTransaction
from shopflow.domain.users import NewUser
from shopflow.persistence.dead_letter_store import DeadLetterEntry, StoredDeadLetter
from shopflow.persistence.ledger import LedgerEntry
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import Settings


class InjectedFault(TransientError):
    pass


@dataclass
class Faults:
    """Operation name -> how many more calls of it fail transiently (or, `poisoned`,
    fail every time with an error that is not transient)."""

    remaining: dict[str, int] = field(default_factory=dict)
    poisoned: set[str] = field(default_factory=set)  # operations that always fail, for good
    declines: dict[str, int] = field(default_factory=dict)  # payment reference -> declines
    payment_attempts: list[str] = field(default_factory=list)
    # Run once each, when the ledger is about to record (another transaction's moment).
    before_record: list[Callable[[], None]] = field(default_factory=list)

    def check(self, operation: str) -> None:
        if operation in self.poisoned:
            raise RuntimeError(f"{operation} is broken")
        if self.remaining.get(operation, 0) > 0:
            self.remaining[operation] -= 1
            raise InjectedFault(f"injected failure of {operation}")


@dataclass
class FakeState:
    users: dict[int, str] = field(default_factory=dict)
    balances: dict[int, int] = field(default_factory=dict)
    transactions: list[tuple[int, str, int, str]] = field(default_factory=list)
    products: dict[int, Product] = field(default_factory=dict)
    cart: dict[tuple[int, int], int] = field(default_factory=dict)
    orders: list[StoredOrder] = field(default_factory=list)  # order id n is orders[n - 1]
    # (order id, status, when it moved there) per cancel or ship.
    moves: list[tuple[int, str, datetime]] = field(default_factory=list)
    payments: list[tuple[int, int, str]] = field(default_factory=list)
    refunds: list[tuple[int, int, str, str]] = field(default_factory=list)
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    dead_letters: dict[UUID, StoredDeadLetter] = field(default_factory=dict)
    # Ids announced `temporarily_unavailable` by committed transactions (NOTIFY's fate).
    announced_unavailable: list[str] = field(default_factory=list)

    def restore(self, snapshot: "FakeState") -> None:
        self.__dict__.update(copy.deepcopy(snapshot.__dict__))

    def comparable(self) -> dict[str, object]:
        """Everything but the ledger, the dead letters (whose rows carry event ids) and
        the announcements."""
        skipped = ("ledger", "dead_letters", "announced_unavailable")
        return {k: v for k, v in self.__dict__.items() if k not in skipped}


@dataclass
class _Repository:
    state: FakeState
    faults: Faults


class FakeUsers(_Repository):
    async def existing(self, user_ids: Sequence[int]) -> set[int]:
        return {u for u in user_ids if u in self.state.users}

    async def add_all(self, users: Sequence[NewUser]) -> int:
        new = [(u.user_id, u.name) for u in users if u.user_id not in self.state.users]
        self.state.users.update(new)
        return len(new)


class FakePoints(_Repository):
    async def open_accounts(self, user_ids: Sequence[int]) -> None:
        for user_id in user_ids:
            assert user_id not in self.state.balances, "primary key"
            self.state.balances[user_id] = 0

    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]:
        return {
            u: self.state.balances[u] for u in sorted(set(user_ids)) if u in self.state.balances
        }

    async def set_balances(self, balances: Mapping[int, int]) -> None:
        self.faults.check("set_balances")
        self.state.balances.update(balances)

    async def record_transactions(self, rows: Sequence[PointTransaction]) -> list[int]:
        self.faults.check("record_transactions")
        # The handlers set the balances first: a user's last row ends at that balance.
        last = {r.user_id: r.balance_after for r in rows}
        assert all(self.state.balances[u] == after for u, after in last.items()), "balance_after"
        first = len(self.state.transactions) + 1
        self.state.transactions.extend(
            (r.user_id, r.kind.value, r.amount, r.command_id) for r in rows
        )
        return list(range(first, first + len(rows)))


class FakeProducts(_Repository):
    async def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        return {i: self.state.products[i] for i in product_ids if i in self.state.products}

    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        return await self.get_many(sorted(set(product_ids)))

    async def add_all(self, created: Sequence[Product]) -> int:
        new = [p for p in created if p.product_id not in self.state.products]
        self.state.products.update({p.product_id: p for p in new})
        return len(new)

    async def update_all(self, changed: Sequence[Product]) -> None:
        self.state.products.update({p.product_id: p for p in changed})

    async def set_stocks(self, changed: Sequence[Product]) -> None:
        self.faults.check("set_stocks")
        self.state.products.update({p.product_id: p for p in changed})


class FakeCarts(_Repository):
    async def lines_of_users_for_update(self, user_ids: Sequence[int]) -> dict[int, list[CartLine]]:
        lines: dict[int, list[CartLine]] = {}
        for (user_id, product_id), units in sorted(self.state.cart.items()):
            if user_id in user_ids:
                lines.setdefault(user_id, []).append(CartLine(product_id, units))
        return lines

    async def set_quantities(self, quantities: Mapping[tuple[int, int], int]) -> None:
        for line, units in quantities.items():
            if units == 0:
                self.state.cart.pop(line, None)
            else:
                self.state.cart[line] = units


class FakeOrders(_Repository):
    async def add_many(self, placed: Sequence[NewOrder]) -> list[int]:
        first = len(self.state.orders) + 1
        self.state.orders.extend(
            StoredOrder(
                order_id=first + i,
                user_id=o.user_id,
                status=OrderStatus.PLACED,
                total=o.order.total,
                placed_at=o.placed_at,
                payment_reference=o.command_id,
                lines=o.order.lines,
            )
            for i, o in enumerate(placed)
        )
        return list(range(first, first + len(placed)))

    async def lock_many(self, order_ids: Sequence[int]) -> dict[int, StoredOrder]:
        return {
            i: self.state.orders[i - 1]
            for i in sorted(set(order_ids))
            if 1 <= i <= len(self.state.orders)
        }

    async def record_moves(self, moved: Sequence[StoredOrder], at: datetime) -> None:
        self.faults.check("record_moves")
        for order in moved:
            stored = self.state.orders[order.order_id - 1]
            assert stored.status is OrderStatus.PLACED, "only a placed order moves"
            self.state.orders[order.order_id - 1] = replace(stored, status=order.status)
            self.state.moves.append((order.order_id, order.status.value, at))


class FakePayments(_Repository):
    """Pays in the transaction; declines a reference as often as `faults.declines` says."""

    pays_in_transaction = True

    async def pay_all(self, payments: Sequence[Payment]) -> list[PaymentDeclined | None]:
        answers: list[PaymentDeclined | None] = []
        for p in payments:
            self.faults.payment_attempts.append(p.reference)
            if self.faults.declines.get(p.reference, 0) > 0:
                self.faults.declines[p.reference] -= 1
                answers.append(PaymentDeclined("declined by the fake"))
                continue
            self.state.payments.append((p.user_id, p.amount, p.reference))
            answers.append(None)
        return answers

    async def refund_all(self, refunds: Sequence[Refund]) -> list[PaymentDeclined | None]:
        answers: list[PaymentDeclined | None] = []
        for r in refunds:
            self.faults.payment_attempts.append(r.reference)
            if self.faults.declines.get(r.reference, 0) > 0:
                self.faults.declines[r.reference] -= 1
                answers.append(PaymentDeclined("declined by the fake"))
                continue
            assert all(r.payment_reference != done for *_, done in self.state.refunds), "unique"
            self.state.refunds.append((r.user_id, r.amount, r.reference, r.payment_reference))
            answers.append(None)
        return answers


class FakeLedger(_Repository):
    async def load(self, command_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        return {i: self.state.ledger[i] for i in command_ids if i in self.state.ledger}

    async def record(self, entries: Sequence[LedgerEntry]) -> set[str]:
        self.faults.check("record")
        while self.faults.before_record:
            self.faults.before_record.pop(0)()
        spent = set()
        for e in entries:
            if e.command_id not in self.state.ledger:
                self.state.ledger[e.command_id] = e
                spent.add(e.command_id)
        return spent

    async def announce_unavailable(self, command_ids: Sequence[str]) -> None:
        self.faults.check("announce_unavailable")
        self.state.announced_unavailable.extend(command_ids)


class FakeDeadLetters(_Repository):
    async def record(self, entries: Sequence[DeadLetterEntry]) -> list[StoredDeadLetter]:
        for e in entries:
            self.state.dead_letters.setdefault(
                e.letter.dead_letter_id,
                StoredDeadLetter(e.letter.dead_letter_id, e.message_key, e.message_json),
            )
        return [self.state.dead_letters[e.letter.dead_letter_id] for e in entries]

    async def replace(self, entry: DeadLetterEntry) -> StoredDeadLetter:
        stored = StoredDeadLetter(
            entry.letter.dead_letter_id, entry.message_key, entry.message_json
        )
        self.state.dead_letters[stored.dead_letter_id] = stored
        return stored


@asynccontextmanager
async def _undone_on_error(state: FakeState, snapshots: list[FakeState]) -> AsyncIterator[None]:
    """A transaction or savepoint: if the block raises, `state` is put back as it was.
    `snapshots` lists the open ones, innermost last (see `commit_elsewhere`)."""
    snapshot = copy.deepcopy(state)
    snapshots.append(snapshot)
    try:
        yield
    except BaseException:
        state.restore(snapshot)
        raise
    finally:
        ended = snapshots.pop()
        assert ended is snapshot  # nested: the innermost ends first


class FakeUnitOfWork:
    def __init__(
        self,
        state: FakeState | None = None,
        faults: Faults | None = None,
        snapshots: list[FakeState] | None = None,
    ) -> None:
        self.state = state if state is not None else FakeState()
        self.faults = faults if faults is not None else Faults()
        self._snapshots = snapshots if snapshots is not None else []
        self.users = FakeUsers(self.state, self.faults)
        self.points = FakePoints(self.state, self.faults)
        self.products = FakeProducts(self.state, self.faults)
        self.carts = FakeCarts(self.state, self.faults)
        self.orders = FakeOrders(self.state, self.faults)
        self.payments = FakePayments(self.state, self.faults)
        self.ledger = FakeLedger(self.state, self.faults)
        self.dead_letters = FakeDeadLetters(self.state, self.faults)

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        return _undone_on_error(self.state, self._snapshots)


class FakeDatabase:
    """One in-memory database; `begin()` is a transaction over it."""

    def __init__(self, state: FakeState | None = None, faults: Faults | None = None) -> None:
        self.state = state if state is not None else FakeState()
        self.faults = faults if faults is not None else Faults()
        self.transactions = 0
        self._snapshots: list[FakeState] = []  # of the open transaction and savepoints

    def commit_elsewhere(self, change: Callable[[FakeState], None]) -> None:
        """Another transaction's committed change: no rollback of ours undoes it."""
        for state in (self.state, *self._snapshots):
            change(state)

    def begin(self) -> AbstractAsyncContextManager[FakeUnitOfWork]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        async with _undone_on_error(self.state, self._snapshots):
            yield FakeUnitOfWork(self.state, self.faults, self._snapshots)
            self.faults.check("commit")
        self.transactions += 1
        # Committed, and the connection lost before the client heard so: the outcome of
        # the COMMIT is unknown to the caller (a failover, a synchronous wait cut short).
        self.faults.check("commit_outcome_lost")


# Credentials for the clients a unit test builds and never starts (no server is there).
UNIT_KAFKA = KafkaConnection(("127.0.0.1:9092",), principal="shopflow", password="unit-test")


def unit_settings(**overrides: Any) -> Settings:
    """Settings with every credential given, so that building the service reads no local
    servers' credentials file: a unit test runs on a fresh clone, before `make up`."""
    return Settings(
        **{
            "kafka_username": "shopflow",
            "kafka_password": "unit-test",
            "database_url": "postgresql+asyncpg://shopflow:unit@127.0.0.1:5432/shopflow",
            "query_database_url": "postgresql+asyncpg://reader:unit@127.0.0.1:5432/shopflow",
            "migration_database_url": "postgresql+asyncpg://owner:unit@127.0.0.1:5432/shopflow",
            "redis_url": "redis://shopflow:unit@127.0.0.1:6379/0",
            **overrides,
        }
    )
