"""Command handlers: one use case each, a handful of lines.

Load what the rule needs (locking it), let the domain decide, write the result, return
the accepted event. A business "no" is raised as a `domain.errors.Rejected`; the batch
applier turns it into the rejection event and rolls the command's effects back.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from consumers.ports import UnitOfWork
from contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from contracts.events import (
    CartItemAdded,
    CartItemRemoved,
    OrderPlaced,
    PlacedOrderLine,
    PointsCharged,
    ProductUpserted,
    ResultEvent,
    UserRegistered,
)
from domain import cart, orders, points
from domain.catalog import new_product
from domain.errors import EmptyCart, Rejected, UnknownProduct, UnknownUser, UserExists
from domain.payment import LedgerPaymentGateway, pay_with_retries


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


async def charge_points_set(
    uow: UnitOfWork, commands: Sequence[tuple[ChargePoints, EventMeta]]
) -> list[PointsCharged | Rejected]:
    """The same rule as `charge_points`, for a whole batch in a few statements: load the
    balances once, let the domain decide each charge in offset order (a user's second
    charge sees the first), then write every new balance and transaction at once."""
    balances = await uow.points.balances_for_update(sorted({c.user_id for c, _ in commands}))
    decisions: list[int | Rejected] = []  # the new balance, or why not
    for cmd, _ in commands:
        balance = balances.get(cmd.user_id)
        try:
            if balance is None:
                raise UnknownUser(f"user {cmd.user_id} is not registered")
            balances[cmd.user_id] = points.charge(balance, cmd.amount)
            decisions.append(balances[cmd.user_id])
        except Rejected as rejection:
            decisions.append(rejection)
    charged = [cmd for (cmd, _), d in zip(commands, decisions, strict=True) if isinstance(d, int)]
    if not charged:
        return [d for d in decisions if isinstance(d, Rejected)]
    await uow.points.set_balances({c.user_id: balances[c.user_id] for c in charged})
    transaction_ids = iter(
        await uow.points.record_transactions(
            [(c.user_id, "charge", c.amount, c.command_id) for c in charged]
        )
    )
    return [
        d
        if isinstance(d, Rejected)
        else PointsCharged(
            **meta.envelope(),
            user_id=cmd.user_id,
            amount=cmd.amount,
            balance=d,
            transaction_id=next(transaction_ids),
        )
        for (cmd, meta), d in zip(commands, decisions, strict=True)
    ]


async def _require_user(uow: UnitOfWork, user_id: int) -> int:
    """The user's balance, locking the user (their balance row is the user's mutex)."""
    balance = await uow.points.balance_for_update(user_id)
    if balance is None:
        raise UnknownUser(f"user {user_id} is not registered")
    return balance


async def add_cart_item(uow: UnitOfWork, cmd: AddCartItem, meta: EventMeta) -> CartItemAdded:
    await _require_user(uow, cmd.user_id)
    product = await uow.products.get(cmd.product_id)
    if product is None:
        raise UnknownProduct(f"product {cmd.product_id} does not exist", product_id=cmd.product_id)
    in_cart = await uow.carts.quantity_for_update(cmd.user_id, cmd.product_id)
    new_quantity = cart.add_to_cart(
        in_cart, cmd.quantity, stock=product.stock, product_id=cmd.product_id
    )
    await uow.carts.set_quantity(cmd.user_id, cmd.product_id, new_quantity)
    return CartItemAdded(
        **meta.envelope(),
        user_id=cmd.user_id,
        product_id=cmd.product_id,
        quantity=cmd.quantity,
        cart_quantity=new_quantity,
    )


async def remove_cart_item(
    uow: UnitOfWork, cmd: RemoveCartItem, meta: EventMeta
) -> CartItemRemoved:
    await _require_user(uow, cmd.user_id)
    if await uow.products.get(cmd.product_id) is None:
        raise UnknownProduct(f"product {cmd.product_id} does not exist", product_id=cmd.product_id)
    in_cart = await uow.carts.quantity_for_update(cmd.user_id, cmd.product_id)
    new_quantity = cart.remove_from_cart(in_cart, cmd.quantity, product_id=cmd.product_id)
    await uow.carts.set_quantity(cmd.user_id, cmd.product_id, new_quantity)
    return CartItemRemoved(
        **meta.envelope(),
        user_id=cmd.user_id,
        product_id=cmd.product_id,
        quantity=cmd.quantity,
        cart_quantity=new_quantity,
    )


async def place_order(uow: UnitOfWork, cmd: PlaceOrder, meta: EventMeta) -> OrderPlaced:
    balance = await _require_user(uow, cmd.user_id)
    if cmd.items is not None:
        requested = [(line.product_id, line.quantity) for line in cmd.items]
    else:
        requested = await uow.carts.lines_for_update(cmd.user_id)
        if not requested:
            raise EmptyCart(f"user {cmd.user_id}'s cart is empty")
    products = await uow.products.lock_many([product_id for product_id, _ in requested])
    order = orders.price_order(requested, products)
    settled = orders.settle(order, balance, products)
    await pay_with_retries(uow.payments, cmd.user_id, order.total, cmd.command_id)
    await uow.products.set_stocks(settled.products)
    await uow.points.set_balance(cmd.user_id, settled.balance)
    await uow.points.record_transaction(cmd.user_id, "use", -order.total, cmd.command_id)
    order_id = await uow.orders.add(cmd.user_id, cmd.command_id, order, meta.occurred_at)
    if cmd.from_cart:
        await uow.carts.remove_lines(cmd.user_id, [line.product_id for line in order.lines])
    return _order_placed(cmd, meta, order_id, settled)


def _order_placed(
    cmd: PlaceOrder, meta: EventMeta, order_id: int, settled: orders.SettledOrder
) -> OrderPlaced:
    return OrderPlaced(
        **meta.envelope(),
        user_id=cmd.user_id,
        order_id=order_id,
        items=[
            PlacedOrderLine(
                product_id=line.product_id, quantity=line.quantity, unit_price=line.unit_price
            )
            for line in settled.order.lines
        ],
        total=settled.order.total,
        balance=settled.balance,
    )


async def place_orders_set(
    uow: UnitOfWork, commands: Sequence[tuple[PlaceOrder, EventMeta]]
) -> list[OrderPlaced | Rejected]:
    """The same rules as `place_order`, for a whole batch: load (locked) the balances,
    carts and products the batch touches once, decide every order in offset order against
    that state in memory (each accepted order changes it for the next), then write all
    the changes in a few statements. A rejected order writes nothing. Payments go through
    the gateway order by order, as the port is defined."""
    balances = await uow.points.balances_for_update(sorted({c.user_id for c, _ in commands}))
    carts = await uow.carts.lines_of_users_for_update(
        sorted({c.user_id for c, _ in commands if c.from_cart})
    )
    wanted = {line.product_id for c, _ in commands for line in c.items or ()}
    wanted.update(product_id for lines in carts.values() for product_id, _ in lines)
    stock = await uow.products.lock_many(sorted(wanted))

    # A gateway that pays inside this transaction and never declines takes the batch's
    # payments in one statement, written with the other changes; any other gateway is
    # called order by order, with the seed's retries, before the order is accepted.
    batch_payments = isinstance(uow.payments, LedgerPaymentGateway)
    decisions: list[orders.SettledOrder | Rejected] = []
    for cmd, _ in commands:
        try:
            balance = balances.get(cmd.user_id)
            if balance is None:
                raise UnknownUser(f"user {cmd.user_id} is not registered")
            if cmd.items is not None:
                requested = [(line.product_id, line.quantity) for line in cmd.items]
            else:
                requested = carts.get(cmd.user_id, [])
                if not requested:
                    raise EmptyCart(f"user {cmd.user_id}'s cart is empty")
            order = orders.price_order(requested, stock)
            settled = orders.settle(order, balance, stock)
            if not batch_payments:
                await pay_with_retries(uow.payments, cmd.user_id, order.total, cmd.command_id)
        except Rejected as rejection:
            decisions.append(rejection)
            continue
        balances[cmd.user_id] = settled.balance
        stock.update({product.product_id: product for product in settled.products})
        if cmd.from_cart:
            carts[cmd.user_id] = []
        decisions.append(settled)

    placed = [
        (cmd, meta, d)
        for (cmd, meta), d in zip(commands, decisions, strict=True)
        if isinstance(d, orders.SettledOrder)
    ]
    order_ids: list[int] = []
    if placed:
        if batch_payments:
            assert isinstance(uow.payments, LedgerPaymentGateway)
            await uow.payments.pay_many(
                [(cmd.user_id, d.order.total, cmd.command_id) for cmd, _, d in placed]
            )
        sold = sorted({line.product_id for _, _, d in placed for line in d.order.lines})
        await uow.products.set_stocks([stock[product_id] for product_id in sold])
        await uow.points.set_balances({cmd.user_id: balances[cmd.user_id] for cmd, _, _ in placed})
        await uow.points.record_transactions(
            [(cmd.user_id, "use", -d.order.total, cmd.command_id) for cmd, _, d in placed]
        )
        order_ids = await uow.orders.add_many(
            [(cmd.user_id, cmd.command_id, d.order, meta.occurred_at) for cmd, meta, d in placed]
        )
        for cmd, _, d in placed:
            if cmd.from_cart:
                ordered = [line.product_id for line in d.order.lines]
                await uow.carts.remove_lines(cmd.user_id, ordered)
    ids = iter(order_ids)
    return [
        d if isinstance(d, Rejected) else _order_placed(cmd, meta, next(ids), d)
        for (cmd, meta), d in zip(commands, decisions, strict=True)
    ]


Handler = Callable[[UnitOfWork, Any, EventMeta], Awaitable[ResultEvent]]
SetHandler = Callable[
    [UnitOfWork, Sequence[tuple[Any, EventMeta]]], Awaitable[Sequence[ResultEvent | Rejected]]
]

HANDLERS: dict[type[Command], Handler] = {
    RegisterUser: register_user,
    UpsertProduct: upsert_product,
    ChargePoints: charge_points,
    AddCartItem: add_cart_item,
    RemoveCartItem: remove_cart_item,
    PlaceOrder: place_order,
}

# Set-based variants (the hot path for throughput); the one-by-one handlers above stay
# the fallback when a set fails, and the definition of the rule.
SET_HANDLERS: dict[type[Command], SetHandler] = {
    ChargePoints: charge_points_set,
    PlaceOrder: place_orders_set,
}
