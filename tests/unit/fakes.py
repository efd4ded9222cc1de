"""In-memory implementations of the handlers' ports (consumers.ports), for fast tests of
the use cases without a database. Integration tests cover the PostgreSQL versions."""

from dataclasses import dataclass, field

from domain.catalog import Product


@dataclass
class FakeUsers:
    names: dict[int, str] = field(default_factory=dict)

    async def add(self, user_id: int, name: str) -> bool:
        if user_id in self.names:
            return False
        self.names[user_id] = name
        return True

    async def exists(self, user_id: int) -> bool:
        return user_id in self.names


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


@dataclass
class FakeProducts:
    rows: dict[int, Product] = field(default_factory=dict)

    async def get_for_update(self, product_id: int) -> Product | None:
        return self.rows.get(product_id)

    async def save(self, product: Product) -> None:
        self.rows[product.product_id] = product


@dataclass
class FakeUnitOfWork:
    users: FakeUsers = field(default_factory=FakeUsers)
    points: FakePoints = field(default_factory=FakePoints)
    products: FakeProducts = field(default_factory=FakeProducts)
