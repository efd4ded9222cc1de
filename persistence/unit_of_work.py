"""The batch's transaction behind the `consumers.ports` protocols: `PgDatabase.begin()`
opens one PostgreSQL transaction and hands out the repositories, the ledger and the
dead-letter records over its connection."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shopflow.domain.payment import PaymentGateway
from shopflow.persistence.dead_letter_store import DeadLetterStore
from shopflow.persistence.ledger import Ledger
from shopflow.persistence.payments import PointsPaymentGateway
from shopflow.persistence.repositories import (
    CartRepository,
    OrderRepository,
    PointsRepository,
    ProductRepository,
    UserRepository,
)

GatewayFactory = Callable[[AsyncConnection], PaymentGateway]


class PgUnitOfWork:
    """Everything of one transaction, sharing its connection. Commit and rollback belong
    to whoever opened it (the batch applier), not to handlers."""

    def __init__(
        self, connection: AsyncConnection, *, gateway: GatewayFactory = PointsPaymentGateway
    ) -> None:
        self._connection = connection
        self.users = UserRepository(connection)
        self.points = PointsRepository(connection)
        self.products = ProductRepository(connection)
        self.carts = CartRepository(connection)
        self.orders = OrderRepository(connection)
        self.payments = gateway(connection)
        self.ledger = Ledger(connection)
        self.dead_letters = DeadLetterStore(connection)

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        # SQLAlchemy's nested transaction: RELEASE on leaving, ROLLBACK TO on an error.
        return self._connection.begin_nested()


class PgDatabase:
    def __init__(
        self, engine: AsyncEngine, *, gateway: GatewayFactory = PointsPaymentGateway
    ) -> None:
        self._engine = engine
        self._gateway = gateway

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PgUnitOfWork]:
        async with self._engine.begin() as connection:
            yield PgUnitOfWork(connection, gateway=self._gateway)
