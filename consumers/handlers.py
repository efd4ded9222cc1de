"""Command handlers: one per command type, for a whole batch of its commands, and their
bindings to the contract's routes (`BINDINGS`, at the end).

Each handler gets its batch and the rows the batch locked (its binding's `LockRule`,
taken by `consumers.locking` in the one global order that keeps batches from
deadlocking), lets the domain decide every command in offset order (`domain.*.decide_*`),
writes the changes in a few statements and answers each command: its accepted event
without the envelope (`functools.partial`), or the `domain.errors.Rejected` it got. A
rejected command writes nothing. The envelope is attached by `consumers.bindings.seal`.
"""

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, Final

from shopflow.consumers.bindings import Answer, Binding, CommandBatch, bind
from shopflow.consumers.failures import TransientError
from shopflow.consumers.locking import LockedRows, LockRule
from shopflow.consumers.ports import UnitOfWork
from shopflow.contracts.commands import (
    AddCartItem,
    CancelOrder,
    ChargePoints,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    ShipOrder,
    UpsertProduct,
)
from shopflow.contracts.common import WireModel
from shopflow.contracts.events import (
    CartItemAdded,
    CartItemRemoved,
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    PlacedOrderLine,
    PointsCharged,
    ProductUpserted,
    UserRegistered,
)
from shopflow.domain.cart import CartChange, decide_cart_changes
from shopflow.domain.catalog import Product, decide_upserts
from shopflow.domain.errors import Rejected
from shopflow.domain.order_lifecycle import (
    Cancellation,
    decide_and_refund_cancellations,
    decide_shipments,
)
from shopflow.domain.orders import NewOrder, PricedLine, SettledOrder, decide_and_pay_orders
from shopflow.domain.points import PointTransaction, TransactionKind, decide_charges
from shopflow.domain.users import NewUser, decide_registrations


class LostInsertRace(TransientError):
    """A row this batch found absent was inserted meanwhile by another transaction (only
    during a rebalance can two consumers hold the same key): retry, and see it."""


async def register_users(
    uow: UnitOfWork, batch: CommandBatch[RegisterUser], locked: LockedRows
) -> list[Answer]:
    commands = batch.commands
    decisions = decide_registrations(
        await uow.users.existing([c.user_id for c in commands]), commands
    )
    new = [
        NewUser(c.user_id, c.name)
        for c, d in zip(commands, decisions, strict=True)
        if isinstance(d, int)
    ]
    if new:
        if await uow.users.add_all(new) != len(new):
            raise LostInsertRace("a user registered by this batch was registered meanwhile")
        await uow.points.open_accounts([u.user_id for u in new])
    return [
        d if isinstance(d, Rejected) else partial(UserRegistered, user_id=c.user_id, name=c.name)
        for c, d in zip(commands, decisions, strict=True)
    ]


async def upsert_products(
    uow: UnitOfWork, batch: CommandBatch[UpsertProduct], locked: LockedRows
) -> list[Answer]:
    existing = locked.products
    decisions = decide_upserts(existing, batch.commands)
    final = {p.product_id: p for p in decisions}  # the last upsert of each product wins
    created = [p for p in final.values() if p.product_id not in existing]
    if created and await uow.products.add_all(created) != len(created):
        raise LostInsertRace("a product created by this batch was created meanwhile")
    await uow.products.update_all([p for p in final.values() if p.product_id in existing])
    return [
        partial(
            ProductUpserted,
            product_id=product.product_id,
            name=product.name,
            price=product.price,
            stock=product.stock,
        )
        for product in decisions
    ]


async def charge_points(
    uow: UnitOfWork, batch: CommandBatch[ChargePoints], locked: LockedRows
) -> list[Answer]:
    decisions = decide_charges(locked.balances, batch.commands)
    charged = [(c, d) for c, d in zip(batch.commands, decisions, strict=True) if isinstance(d, int)]
    if not charged:
        return [d for d in decisions if isinstance(d, Rejected)]
    await uow.points.set_balances({c.user_id: balance for c, balance in charged})
    transaction_ids = iter(
        await uow.points.record_transactions(
            [
                PointTransaction(c.user_id, TransactionKind.CHARGE, c.amount, balance, c.command_id)
                for c, balance in charged
            ]
        )
    )
    return [
        d
        if isinstance(d, Rejected)
        else partial(
            PointsCharged,
            user_id=c.user_id,
            amount=c.amount,
            balance=d,
            transaction_id=next(transaction_ids),
        )
        for c, d in zip(batch.commands, decisions, strict=True)
    ]


async def change_carts(
    uow: UnitOfWork, batch: CommandBatch[CartChange], locked: LockedRows
) -> list[Answer]:
    """AddCartItem and RemoveCartItem: one rule set (`domain.cart`), two topics. The
    products are only read, not locked: a cart change writes none."""
    commands = batch.commands
    products = await uow.products.get_many([c.product_id for c in commands])
    quantities = {
        (user_id, line.product_id): line.quantity
        for user_id, user_lines in locked.carts.items()
        for line in user_lines
    }
    decisions = decide_cart_changes(set(locked.balances), products, quantities, commands)
    await uow.carts.set_quantities(
        {
            (c.user_id, c.product_id): d
            for c, d in zip(commands, decisions, strict=True)
            if isinstance(d, int)
        }
    )
    return [
        d
        if isinstance(d, Rejected)
        else partial(
            CartItemAdded if isinstance(c, AddCartItem) else CartItemRemoved,
            user_id=c.user_id,
            product_id=c.product_id,
            quantity=c.quantity,
            cart_quantity=d,
        )
        for c, d in zip(commands, decisions, strict=True)
    ]


async def place_orders(
    uow: UnitOfWork, batch: CommandBatch[PlaceOrder], locked: LockedRows
) -> list[Answer]:
    """Every order decided and paid (`domain.orders.decide_and_pay_orders`), then
    everything the placed ones change written at once."""
    decisions = await decide_and_pay_orders(
        locked.balances, locked.carts, locked.products, batch.commands, uow.payments
    )
    placed = [
        (c, d)
        for c, d in zip(batch.commands, decisions, strict=True)
        if isinstance(d, SettledOrder)
    ]
    order_ids: list[int] = []
    if placed:
        await _set_final_stocks(uow, [p for _, d in placed for p in d.products])
        await uow.points.set_balances({c.user_id: d.balance for c, d in placed})
        order_ids = await uow.orders.add_many(
            [NewOrder(c.user_id, c.command_id, d.order, batch.decided_at) for c, d in placed]
        )
        await uow.points.record_transactions(
            [
                PointTransaction(
                    c.user_id,
                    TransactionKind.USE,
                    -d.order.total,
                    d.balance,
                    c.command_id,
                    order_id,
                )
                for (c, d), order_id in zip(placed, order_ids, strict=True)
            ]
        )
        await uow.carts.set_quantities(
            {
                (c.user_id, line.product_id): 0
                for c, d in placed
                if c.from_cart
                for line in d.order.lines
            }
        )
    ids = iter(order_ids)
    return [
        d if isinstance(d, Rejected) else _order_placed(c, next(ids), d)
        for c, d in zip(batch.commands, decisions, strict=True)
    ]


async def _set_final_stocks(uow: UnitOfWork, changed: Iterable[Product]) -> None:
    """Write each product's stock as the batch's last decision about it left it."""
    final = {p.product_id: p for p in changed}
    await uow.products.set_stocks(sorted(final.values(), key=lambda p: p.product_id))


def _order_placed(cmd: PlaceOrder, order_id: int, d: SettledOrder) -> Answer:
    return partial(
        OrderPlaced,
        user_id=cmd.user_id,
        order_id=order_id,
        items=_event_lines(d.order.lines),
        total=d.order.total,
        balance=d.balance,
    )


def _event_lines(lines: Iterable[PricedLine]) -> list[PlacedOrderLine]:
    return [
        PlacedOrderLine(
            product_id=line.product_id, quantity=line.quantity, unit_price=line.unit_price
        )
        for line in lines
    ]


async def cancel_orders(
    uow: UnitOfWork, batch: CommandBatch[CancelOrder], locked: LockedRows
) -> list[Answer]:
    """Every cancel decided and refunded (`domain.order_lifecycle`), then everything the
    accepted ones change written at once: the orders' status, the stock put back, the
    balances and their `refund` transactions."""
    decisions = await decide_and_refund_cancellations(
        locked.balances, locked.orders, locked.products, batch.commands, uow.payments
    )
    cancelled = [
        (c, d)
        for c, d in zip(batch.commands, decisions, strict=True)
        if isinstance(d, Cancellation)
    ]
    if cancelled:
        await uow.orders.record_moves([d.order for _, d in cancelled], batch.decided_at)
        await _set_final_stocks(uow, [p for _, d in cancelled for p in d.products])
        await uow.points.set_balances({c.user_id: d.balance for c, d in cancelled})
        await uow.points.record_transactions(
            [
                PointTransaction(
                    c.user_id,
                    TransactionKind.REFUND,
                    d.order.total,
                    d.balance,
                    c.command_id,
                    d.order.order_id,
                )
                for c, d in cancelled
            ]
        )
    return [
        d
        if isinstance(d, Rejected)
        else partial(
            OrderCancelled,
            user_id=c.user_id,
            order_id=c.order_id,
            items=_event_lines(d.order.lines),
            refunded=d.order.total,
            balance=d.balance,
            placed_at=d.order.placed_at,
        )
        for c, d in zip(batch.commands, decisions, strict=True)
    ]


async def ship_orders(
    uow: UnitOfWork, batch: CommandBatch[ShipOrder], locked: LockedRows
) -> list[Answer]:
    decisions = decide_shipments(locked.orders, batch.commands)
    await uow.orders.record_moves(
        [d for d in decisions if not isinstance(d, Rejected)], batch.decided_at
    )
    return [
        d
        if isinstance(d, Rejected)
        else partial(OrderShipped, user_id=c.user_id, order_id=c.order_id)
        for c, d in zip(batch.commands, decisions, strict=True)
    ]


# The command registry's consumer side: each contract route's handler and the rows its
# batches lock (what else a new command touches: `contracts.topics`). `bind` refuses a
# route without a binding, so the consumers do not import until it has one. The
# bindings are a tuple before `bind` takes them: outside its `Binding[Any]` parameter,
# mypy infers each binding's command type and checks its handler and lock rule.

# A cart change locks its user (the balance row) and that user's cart lines.
_CART_LOCKS: Final = LockRule[CartChange](
    balance_of=lambda cmd: cmd.user_id, cart_of_user=lambda cmd: True
)

_BINDINGS: Final = (
    Binding(RegisterUser, register_users, LockRule()),
    Binding(UpsertProduct, upsert_products, LockRule(products=lambda cmd: (cmd.product_id,))),
    Binding(ChargePoints, charge_points, LockRule(balance_of=lambda cmd: cmd.user_id)),
    Binding(AddCartItem, change_carts, _CART_LOCKS),
    Binding(RemoveCartItem, change_carts, _CART_LOCKS),
    Binding(
        PlaceOrder,
        place_orders,
        # The lines ordered: the explicit ones, or with from_cart the cart's.
        LockRule(
            balance_of=lambda cmd: cmd.user_id,
            cart_of_user=lambda cmd: cmd.from_cart is True,
            products=lambda cmd: [line.product_id for line in cmd.items or ()],
            products_in_cart=True,
        ),
    ),
    # A cancel changes its user's points and its order's products; a ship only its order.
    Binding(
        CancelOrder,
        cancel_orders,
        LockRule(
            balance_of=lambda cmd: cmd.user_id,
            orders=lambda cmd: (cmd.order_id,),
            products_in_orders=True,
        ),
    ),
    Binding(ShipOrder, ship_orders, LockRule(orders=lambda cmd: (cmd.order_id,))),
)
BINDINGS: Final[Mapping[type[WireModel], Binding[Any]]] = bind(*_BINDINGS)
