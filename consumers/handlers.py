"""Command handlers: one per command type, for a whole batch of its commands, and their
bindings to the contract's routes (`BINDINGS`, at the end).

Each handler gets the rows its batch locked (its binding's `LockRule`, taken by
`consumers.locking` in the one global order that keeps batches from deadlocking), lets
the domain decide every command in offset order (`domain.*.decide_*`), writes the
changes in a few statements and returns, per command, the accepted event or the
`domain.errors.Rejected` it got. A rejected command writes nothing. The applier also
runs a binding on a batch of one when it must retry commands one at a time: there is no
other implementation of a rule.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shopflow.consumers.failures import TransientError
from shopflow.consumers.locking import LockedRows, LockRule
from shopflow.consumers.ports import UnitOfWork
from shopflow.consumers.routes import Answer, Binding, EventMeta, bind
from shopflow.contracts.commands import (
    AddCartItem,
    ChargePoints,
    PlaceOrder,
    RegisterUser,
    RemoveCartItem,
    UpsertProduct,
)
from shopflow.contracts.common import WireModel
from shopflow.contracts.events import (
    CartItemAdded,
    CartItemRemoved,
    OrderPlaced,
    PlacedOrderLine,
    PointsCharged,
    ProductUpserted,
    UserRegistered,
)
from shopflow.domain.cart import CartChange, decide_cart_changes
from shopflow.domain.catalog import Product, decide_upserts
from shopflow.domain.errors import Rejected
from shopflow.domain.orders import SettledOrder, decide_orders
from shopflow.domain.payment import Payment, pay_with_retries
from shopflow.domain.points import decide_charges
from shopflow.domain.users import decide_registrations


class LostInsertRace(TransientError):
    """A row this batch found absent was inserted meanwhile by another transaction (only
    during a rebalance can two consumers hold the same key): retry, and see it."""


async def register_users(
    uow: UnitOfWork, commands: Sequence[tuple[RegisterUser, EventMeta]], locked: LockedRows
) -> list[Answer]:
    registered = await uow.users.existing([cmd.user_id for cmd, _ in commands])
    decisions = decide_registrations(registered, [cmd for cmd, _ in commands])
    new = [cmd for (cmd, _), d in zip(commands, decisions, strict=True) if isinstance(d, int)]
    if new:
        if await uow.users.add_all([(cmd.user_id, cmd.name) for cmd in new]) != len(new):
            raise LostInsertRace("a user registered by this batch was registered meanwhile")
        await uow.points.open_accounts([cmd.user_id for cmd in new])
    return [
        d
        if isinstance(d, Rejected)
        else UserRegistered(**meta.envelope(), user_id=cmd.user_id, name=cmd.name)
        for (cmd, meta), d in zip(commands, decisions, strict=True)
    ]


async def upsert_products(
    uow: UnitOfWork, commands: Sequence[tuple[UpsertProduct, EventMeta]], locked: LockedRows
) -> list[Answer]:
    existing = locked.products
    decisions = decide_upserts(existing, [cmd for cmd, _ in commands])
    final = {p.product_id: p for p in decisions}  # the last upsert of each product wins
    created = [p for p in final.values() if p.product_id not in existing]
    if created and await uow.products.add_all(created) != len(created):
        raise LostInsertRace("a product created by this batch was created meanwhile")
    await uow.products.update_all([p for p in final.values() if p.product_id in existing])
    return [
        ProductUpserted(
            **meta.envelope(),
            product_id=product.product_id,
            name=product.name,
            price=product.price,
            stock=product.stock,
        )
        for (_, meta), product in zip(commands, decisions, strict=True)
    ]


async def charge_points(
    uow: UnitOfWork, commands: Sequence[tuple[ChargePoints, EventMeta]], locked: LockedRows
) -> list[Answer]:
    decisions = decide_charges(locked.balances, [cmd for cmd, _ in commands])
    charged = [
        (cmd, d) for (cmd, _), d in zip(commands, decisions, strict=True) if isinstance(d, int)
    ]
    if not charged:
        return [d for d in decisions if isinstance(d, Rejected)]
    await uow.points.set_balances({cmd.user_id: balance for cmd, balance in charged})
    transaction_ids = iter(
        await uow.points.record_transactions(
            [(cmd.user_id, "charge", cmd.amount, cmd.command_id) for cmd, _ in charged]
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


async def change_carts(
    uow: UnitOfWork, commands: Sequence[tuple[CartChange, EventMeta]], locked: LockedRows
) -> list[Answer]:
    """AddCartItem and RemoveCartItem: one rule set (`domain.cart`), two topics. The
    products are only read, not locked: a cart change writes none."""
    users = set(locked.balances)
    products = await uow.products.get_many([cmd.product_id for cmd, _ in commands])
    quantities = {
        (user_id, product_id): units
        for user_id, user_lines in locked.carts.items()
        for product_id, units in user_lines
    }
    decisions = decide_cart_changes(users, products, quantities, [cmd for cmd, _ in commands])
    changed = {
        (cmd.user_id, cmd.product_id): d
        for (cmd, _), d in zip(commands, decisions, strict=True)
        if isinstance(d, int)
    }
    await uow.carts.set_quantities(changed)
    answers: list[Answer] = []
    for (cmd, meta), d in zip(commands, decisions, strict=True):
        if isinstance(d, Rejected):
            answers.append(d)
            continue
        event = CartItemAdded if isinstance(cmd, AddCartItem) else CartItemRemoved
        answers.append(
            event(
                **meta.envelope(),
                user_id=cmd.user_id,
                product_id=cmd.product_id,
                quantity=cmd.quantity,
                cart_quantity=d,
            )
        )
    return answers


async def place_orders(
    uow: UnitOfWork, commands: Sequence[tuple[PlaceOrder, EventMeta]], locked: LockedRows
) -> list[Answer]:
    """Payments are made in rounds: decide every order, pay the accepted ones not paid
    yet (each with the seed's retries, `domain.payment`), and if some were declined
    decide again with those refused `payment_failed`, which may free points or stock
    for later orders that then need paying too. `decide_orders` is monotone in the
    declines, so an order once paid stays placed; with a gateway that does not decline
    there is one round. Then everything is written at once."""
    cmds = [cmd for cmd, _ in commands]
    balances, carts, stock = locked.balances, locked.carts, locked.products
    declined: dict[str, str] = {}
    paid: set[str] = set()
    while True:
        decisions = decide_orders(balances, carts, stock, cmds, declined)
        unpaid = [
            Payment(cmd.user_id, d.order.total, cmd.command_id)
            for cmd, d in zip(cmds, decisions, strict=True)
            if isinstance(d, SettledOrder) and cmd.command_id not in paid
        ]
        if not unpaid:
            break
        failed = await pay_with_retries(uow.payments, unpaid)
        paid.update(p.reference for p in unpaid if p.reference not in failed)
        if not failed:
            break  # no new decline: deciding again would give the same decisions
        declined.update(failed)
    placed = [
        (cmd, meta, d)
        for (cmd, meta), d in zip(commands, decisions, strict=True)
        if isinstance(d, SettledOrder)
    ]
    unplaced = paid - {cmd.command_id for cmd, _, _ in placed}
    if unplaced:  # cannot happen while decide_orders is monotone
        raise RuntimeError(f"orders paid but not placed: {sorted(unplaced)}")
    order_ids: list[int] = []
    if placed:
        final_stock: dict[int, Product] = {}
        for _, _, d in placed:
            final_stock.update({p.product_id: p for p in d.products})
        await uow.products.set_stocks(sorted(final_stock.values(), key=lambda p: p.product_id))
        await uow.points.set_balances({cmd.user_id: d.balance for cmd, _, d in placed})
        await uow.points.record_transactions(
            [(cmd.user_id, "use", -d.order.total, cmd.command_id) for cmd, _, d in placed]
        )
        order_ids = await uow.orders.add_many(
            [(cmd.user_id, cmd.command_id, d.order, meta.occurred_at) for cmd, meta, d in placed]
        )
        await uow.carts.set_quantities(
            {
                (cmd.user_id, line.product_id): 0
                for cmd, _, d in placed
                if cmd.from_cart
                for line in d.order.lines
            }
        )
    ids = iter(order_ids)
    return [
        d if isinstance(d, Rejected) else _order_placed(cmd, meta, next(ids), d)
        for (cmd, meta), d in zip(commands, decisions, strict=True)
    ]


def _order_placed(cmd: PlaceOrder, meta: EventMeta, order_id: int, d: SettledOrder) -> OrderPlaced:
    return OrderPlaced(
        **meta.envelope(),
        user_id=cmd.user_id,
        order_id=order_id,
        items=[
            PlacedOrderLine(
                product_id=line.product_id, quantity=line.quantity, unit_price=line.unit_price
            )
            for line in d.order.lines
        ],
        total=d.order.total,
        balance=d.balance,
    )


# The command registry's consumer side: each contract route's handler and the rows its
# batches lock. A new command adds its handler above and its binding here (with its
# model and route in contracts/commands.py and its events in contracts/events.py: three
# files in all); `bind` refuses a route without a binding, so the consumers do not
# import until it has one. The bindings are a tuple before `bind` takes them: outside
# its `Binding[Any]` parameter, mypy infers each binding's command type and checks its
# handler and lock rule against it.

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
)
BINDINGS: Final[Mapping[type[WireModel], Binding[Any]]] = bind(*_BINDINGS)
