"""The repositories of one transaction, bundled for the command handlers."""

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payment import PaymentGateway
from persistence.payments import PgPaymentGateway
from persistence.repositories import (
    CartRepository,
    OrderRepository,
    PointsRepository,
    ProductRepository,
    UserRepository,
)

GatewayFactory = Callable[[AsyncConnection], PaymentGateway]


class PgUnitOfWork:
    """Repositories sharing the batch's connection. Commit and rollback (savepoints per
    command, one transaction per batch) belong to the batch applier, not to handlers."""

    def __init__(
        self, connection: AsyncConnection, *, gateway: GatewayFactory = PgPaymentGateway
    ) -> None:
        self.users = UserRepository(connection)
        self.points = PointsRepository(connection)
        self.products = ProductRepository(connection)
        self.carts = CartRepository(connection)
        self.orders = OrderRepository(connection)
        self.payments = gateway(connection)
