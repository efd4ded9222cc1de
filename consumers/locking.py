"""The rows a batch locks: each command type declares which (its binding's `LockRule`,
`consumers.handlers.BINDINGS`), and `lock_rows` takes them, here only, before the
handler runs.

Locks, and why batches cannot deadlock: a batch holds every row lock until it commits,
so every batch takes them in one global order: point balances by user id (the balance
row is the user's mutex: every command that changes a user's points or cart holds it),
then those users' cart lines, then orders by order id, then products by product id. Each
kind is taken in one statement whose rows are locked in id order
(`persistence.repositories`). A rule says which rows of each kind; it cannot change the
order, which is why a new command type cannot bring a deadlock with it. (A ship locks
only its orders: it waits for nothing else while it holds them.)
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shopflow.consumers.ports import UnitOfWork
from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.order_lifecycle import StoredOrder

C = TypeVar("C")


@dataclass(frozen=True)
class LockRule(Generic[C]):
    """Which rows a command of type C locks. All empty: none (a registration only inserts,
    and a lost insert race is retried)."""

    # The user whose balance row it locks, when it changes that user's points or cart.
    balance_of: Callable[[C], int] | None = None
    # Whether it also locks that user's cart lines (only a user who exists has a cart).
    cart_of_user: Callable[[C], bool] | None = None
    # The products it locks (to change them).
    products: Callable[[C], Iterable[int]] | None = None
    # Whether it also locks the products of the cart lines it locked.
    products_in_cart: bool = False
    # The orders it locks (to move them on: cancel, ship), with their lines.
    orders: Callable[[C], Iterable[int]] | None = None
    # Whether it also locks the products of the orders' lines (to put stock back).
    products_in_orders: bool = False

    def __post_init__(self) -> None:
        if self.cart_of_user is not None and self.balance_of is None:
            raise ValueError("a cart is locked under its user's balance row: give balance_of")
        if self.products_in_cart and self.cart_of_user is None:
            raise ValueError("products_in_cart needs cart_of_user")
        if self.products_in_orders and self.orders is None:
            raise ValueError("products_in_orders needs orders")


@dataclass(frozen=True)
class LockedRows:
    """What a batch locked, as its handler gets it."""

    # user id -> balance, of the users that exist.
    balances: dict[int, int] = field(default_factory=dict)
    # user id -> the lines of each locked cart that is not empty.
    carts: dict[int, list[CartLine]] = field(default_factory=dict)
    # order id -> order, of the orders that exist (whoever's they are).
    orders: dict[int, StoredOrder] = field(default_factory=dict)
    # product id -> product, of the products that exist.
    products: dict[int, Product] = field(default_factory=dict)


async def lock_rows(uow: UnitOfWork, rule: LockRule[C], commands: Sequence[C]) -> LockedRows:
    """Lock the rows `rule` names for `commands`, in the global order, and return them."""
    balances: dict[int, int] = {}
    carts: dict[int, list[CartLine]] = {}
    orders: dict[int, StoredOrder] = {}
    products: dict[int, Product] = {}
    if rule.balance_of is not None:
        user_of = rule.balance_of
        balances = await uow.points.balances_for_update([user_of(cmd) for cmd in commands])
        if rule.cart_of_user is not None:
            wants_cart = rule.cart_of_user
            users = {user_of(cmd) for cmd in commands if wants_cart(cmd)} & balances.keys()
            carts = await uow.carts.lines_of_users_for_update(sorted(users))
    if rule.orders is not None:
        named_orders = rule.orders
        orders = await uow.orders.lock_many(
            sorted({o for cmd in commands for o in named_orders(cmd)})
        )
    if rule.products is not None or rule.products_in_cart or rule.products_in_orders:
        named = rule.products
        wanted = {p for cmd in commands for p in named(cmd)} if named is not None else set()
        if rule.products_in_cart:
            wanted.update(line.product_id for lines in carts.values() for line in lines)
        if rule.products_in_orders:
            wanted.update(line.product_id for order in orders.values() for line in order.lines)
        products = await uow.products.lock_many(sorted(wanted))
    return LockedRows(balances, carts, orders, products)
