"""Command handlers: one use case each, a handful of lines.

Load what the rule needs (locking it), let the domain decide, write the result, return
the accepted event. A business "no" is raised as a `domain.errors.Rejected`; the batch
applier turns it into the rejection event and rolls the command's effects back.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers.ports import UnitOfWork
from contracts.commands import ChargePoints, Command, RegisterUser, UpsertProduct
from contracts.events import PointsCharged, ProductUpserted, ResultEvent, UserRegistered
from domain import points
from domain.catalog import new_product
from domain.errors import UnknownUser, UserExists


@dataclass(frozen=True)
class EventMeta:
    """The envelope of the one result event a command gets."""

    event_id: UUID
    command_id: str
    occurred_at: datetime

    def envelope(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "command_id": self.command_id,
            "occurred_at": self.occurred_at,
        }


async def register_user(uow: UnitOfWork, cmd: RegisterUser, meta: EventMeta) -> UserRegistered:
    if not await uow.users.add(cmd.user_id, cmd.name):
        raise UserExists(f"user {cmd.user_id} exists")
    await uow.points.open_account(cmd.user_id)
    return UserRegistered(**meta.envelope(), user_id=cmd.user_id, name=cmd.name)


async def upsert_product(uow: UnitOfWork, cmd: UpsertProduct, meta: EventMeta) -> ProductUpserted:
    existing = await uow.products.get_for_update(cmd.product_id)
    if existing is None:
        product = new_product(cmd.product_id, cmd.name, cmd.price, cmd.stock_added)
    else:
        product = existing.restocked(cmd.name, cmd.price, cmd.stock_added)
    await uow.products.save(product)
    return ProductUpserted(
        **meta.envelope(),
        product_id=product.product_id,
        name=product.name,
        price=product.price,
        stock=product.stock,
    )


async def charge_points(uow: UnitOfWork, cmd: ChargePoints, meta: EventMeta) -> PointsCharged:
    balance = await uow.points.balance_for_update(cmd.user_id)
    if balance is None:
        raise UnknownUser(f"user {cmd.user_id} is not registered")
    new_balance = points.charge(balance, cmd.amount)
    await uow.points.set_balance(cmd.user_id, new_balance)
    transaction_id = await uow.points.record_transaction(
        cmd.user_id, "charge", cmd.amount, cmd.command_id
    )
    return PointsCharged(
        **meta.envelope(),
        user_id=cmd.user_id,
        amount=cmd.amount,
        balance=new_balance,
        transaction_id=transaction_id,
    )


Handler = Callable[[UnitOfWork, Any, EventMeta], Awaitable[ResultEvent]]

HANDLERS: dict[type[Command], Handler] = {
    RegisterUser: register_user,
    UpsertProduct: upsert_product,
    ChargePoints: charge_points,
}
