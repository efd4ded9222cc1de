"""In-memory implementations of the handlers' ports (consumers.ports), for fast tests of
the use cases without a database. Integration tests cover the PostgreSQL versions."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain.catalog import Product
from domain.orders import PricedOrder
from domain.payment import PaymentDeclined


@dataclass
class FakeUsers:
    names: dict[int, str] = field(default_factory=dict)

    async def add(self, user_id: int, name: str) -> bool:
        if user_id in self.names:
            return False
        self.names[user_id] = name
        return True


@dataclass
class FakePoints:
    balances: dict[int, int] = field(default_factory=dict)
    transactions: list[tuple[int, str, int, str]] = field(default_factory=list)

    async def open_account(self, user_id: int) -> None:
        self.balances[user_id] = 0

    async def balance_for_update(self, user_id: int) -> int | None:
        return self.balances.get(user_id)

    async def set_balance(self, user_id: int, balance: int) -> None:
        self.balances[user_id] = balance

    async def record_transaction(
        self, user_id: int, kind: str, amount: int, command_id: str
    ) -> int:
        self.transactions.append((user_id, kind, amount, command_id))
        return len(self.transactions)

    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]:
        return {u: self.balances[u] for u in user_ids if u in self.balances}

    async def set_balances(self, balances: Mapping[int, int]) -> None:
        self.balances.update(balances)

    async def record_transactions(self, rows: Sequence[tuple[int, str, int, str]]) -> list[int]:
        return [await self.record_transaction(*row) for row in rows]


@dataclass
class FakeProducts:
    rows: dict[int, Product] = field(default_factory=dict)

    async def get(self, product_id: int) -> Product | None:
        return self.rows.get(product_id)

    async def get_for_update(self, product_id: int) -> Product | None:
        return self.rows.get(product_id)

    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        return {i: self.rows[i] for i in sorted(set(product_ids)) if i in self.rows}

    async def set_stocks(self, changed: Sequence[Product]) -> None:
        for product in changed:
            self.rows[product.product_id] = product

    async def save(self, product: Product) -> None:
        self.rows[product.product_id] = product


@dataclass
class FakeCarts:
    lines: dict[tuple[int, int], int] = field(default_factory=dict)

    async def quantity_for_update(self, user_id: int, product_id: int) -> int:
        return self.lines.get((user_id, product_id), 0)

    async def set_quantity(self, user_id: int, product_id: int, quantity: int) -> None:
        if quantity == 0:
            self.lines.pop((user_id, product_id), None)
        else:
            self.lines[(user_id, product_id)] = quantity

    async def lines_for_update(self, user_id: int) -> list[tuple[int, int]]:
        return sorted((p, q) for (u, p), q in self.lines.items() if u == user_id)

    async def lines_of_users_for_update(
        self, user_ids: Sequence[int]
    ) -> dict[int, list[tuple[int, int]]]:
        found = {u: await self.lines_for_update(u) for u in user_ids}
        return {u: lines for u, lines in found.items() if lines}

    async def remove_lines(self, user_id: int, product_ids: Sequence[int]) -> None:
        for product_id in product_ids:
            self.lines.pop((user_id, product_id), None)


@dataclass
class FakeOrders:
    placed: list[tuple[int, str, PricedOrder]] = field(default_factory=list)

    async def add(
        self, user_id: int, command_id: str, order: PricedOrder, placed_at: datetime
    ) -> int:
        self.placed.append((user_id, command_id, order))
        return len(self.placed)

    async def add_many(self, placed: Sequence[tuple[int, str, PricedOrder, datetime]]) -> list[int]:
        return [await self.add(*row) for row in placed]


@dataclass
class FakePayments:
    """Declines the first `failures` attempts, then records payments."""

    failures: int = 0
    attempts: int = 0
    paid: list[tuple[int, int, str]] = field(default_factory=list)

    async def pay(self, user_id: int, amount: int, reference: str) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise PaymentDeclined(f"declined (attempt {self.attempts})")
        self.paid.append((user_id, amount, reference))


@dataclass
class FakeUnitOfWork:
    users: FakeUsers = field(default_factory=FakeUsers)
    points: FakePoints = field(default_factory=FakePoints)
    products: FakeProducts = field(default_factory=FakeProducts)
    carts: FakeCarts = field(default_factory=FakeCarts)
    orders: FakeOrders = field(default_factory=FakeOrders)
    payments: FakePayments = field(default_factory=FakePayments)
