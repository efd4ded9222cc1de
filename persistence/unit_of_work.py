"""The repositories of one transaction, bundled for the command handlers."""

from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.repositories import PointsRepository, ProductRepository, UserRepository


class PgUnitOfWork:
    """Repositories sharing the batch's connection. Commit and rollback (savepoints per
    command, one transaction per batch) belong to the batch applier, not to handlers."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.users = UserRepository(connection)
        self.points = PointsRepository(connection)
        self.products = ProductRepository(connection)
