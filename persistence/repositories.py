"""Repositories over one connection (the batch's transaction).

Every method takes or returns a whole batch, in one statement: rows are bound as one
array per column (`persistence.arrays`). Reads that precede a write lock their rows,
sorted by key, so two batches touching the same users or products settle in turn
instead of overwriting each other, and cannot deadlock.

The lock is `FOR NO KEY UPDATE`, the one an UPDATE of non-key columns takes, not
`FOR UPDATE`: inserting a row that references a product (a cart line, an order line)
takes `FOR KEY SHARE` on the product, in the order of the inserted rows, which is not
product order. `FOR UPDATE` conflicts with that, and an order batch locking products
deadlocked with a cart batch inserting lines (found by `make bench`'s mix with two
workers); `FOR NO KEY UPDATE` does not, and still excludes every other writer.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shopflow.domain.cart import CartLine
from shopflow.domain.catalog import Product
from shopflow.domain.order_lifecycle import OrderStatus, StoredOrder
from shopflow.domain.orders import NewOrder, PricedLine
from shopflow.domain.points import PointTransaction
from shopflow.domain.users import NewUser
from shopflow.persistence.arrays import any_of, bound, rows_of
from shopflow.persistence.tables import (
    cart_items,
    order_lines,
    orders,
    point_balances,
    point_transactions,
    products,
    users,
)

_ID = BigInteger()
_TEXT = String()
_MOMENT = DateTime(timezone=True)

# Every statement is built once, here: building a Core statement costs more CPU than
# executing its cached compiled form (docs/measurements.md#optimisations).

_EXISTING_USERS = select(users.c.user_id).where(any_of(users.c.user_id, "ids", _ID))

_new_users = rows_of("u", user_id=_ID, name=_TEXT)
_ADD_USERS = (
    pg_insert(users)
    .from_select(["user_id", "name"], select(_new_users).order_by(_new_users.c.user_id))
    .on_conflict_do_nothing(index_elements=[users.c.user_id])
    .returning(users.c.user_id)
)

_new_accounts = rows_of("a", user_id=_ID)
_OPEN_ACCOUNTS = insert(point_balances).from_select(
    ["user_id", "balance"],
    select(_new_accounts.c.user_id, literal(0)).order_by(_new_accounts.c.user_id),
)

_LOCK_BALANCES = (
    select(point_balances.c.user_id, point_balances.c.balance)
    .where(any_of(point_balances.c.user_id, "ids", _ID))
    .order_by(point_balances.c.user_id)
    .with_for_update(key_share=True)
)

_new_balances = rows_of("b", user_id=_ID, balance=_ID)
_SET_BALANCES = (
    update(point_balances)
    .where(point_balances.c.user_id == _new_balances.c.user_id)
    .values(balance=_new_balances.c.balance, updated_at=func.now())
)

_new_transactions = rows_of(
    "t",
    user_id=_ID,
    kind=_TEXT,
    amount=_ID,
    balance_after=_ID,
    command_id=_TEXT,
    order_id=_ID,
)
_RECORD_TRANSACTIONS = (
    insert(point_transactions)
    .from_select(
        ["user_id", "kind", "amount", "balance_after", "command_id", "order_id"],
        select(_new_transactions),
    )
    .returning(point_transactions.c.transaction_id, point_transactions.c.command_id)
)

_PRODUCT_COLUMNS = (products.c.product_id, products.c.name, products.c.price, products.c.stock)
_GET_PRODUCTS = select(*_PRODUCT_COLUMNS).where(any_of(products.c.product_id, "ids", _ID))
_LOCK_PRODUCTS = (
    select(*_PRODUCT_COLUMNS)
    .where(any_of(products.c.product_id, "ids", _ID))
    .order_by(products.c.product_id)
    .with_for_update(key_share=True)
)

_given_products = rows_of("p", product_id=_ID, name=_TEXT, price=_ID, stock=_ID)
# A new product's units are all added; an update adds the difference to `stock_added`
# (an upsert's stock is the old one plus its `stock_added`, `domain.catalog`).
_ADD_PRODUCTS = (
    pg_insert(products)
    .from_select(
        ["product_id", "name", "price", "stock", "stock_added"],
        select(_given_products, _given_products.c.stock).order_by(_given_products.c.product_id),
    )
    .on_conflict_do_nothing(index_elements=[products.c.product_id])
    .returning(products.c.product_id)
)
_UPDATE_PRODUCTS = (
    update(products)
    .where(products.c.product_id == _given_products.c.product_id)
    .values(
        name=_given_products.c.name,
        price=_given_products.c.price,
        stock=_given_products.c.stock,
        stock_added=products.c.stock_added + _given_products.c.stock - products.c.stock,
        updated_at=func.now(),
    )
)

_new_stocks = rows_of("s", product_id=_ID, stock=_ID)
_SET_STOCKS = (
    update(products)
    .where(products.c.product_id == _new_stocks.c.product_id)
    .values(stock=_new_stocks.c.stock, updated_at=func.now())
)

_LOCK_CART_LINES = (
    select(cart_items.c.user_id, cart_items.c.product_id, cart_items.c.quantity)
    .where(any_of(cart_items.c.user_id, "ids", _ID))
    .order_by(cart_items.c.user_id, cart_items.c.product_id)
    .with_for_update(key_share=True)
)

_kept_lines = rows_of("k", user_id=_ID, product_id=_ID, quantity=_ID)
_upsert = pg_insert(cart_items).from_select(
    ["user_id", "product_id", "quantity"], select(_kept_lines)
)
_UPSERT_CART_LINES = _upsert.on_conflict_do_update(
    index_elements=[cart_items.c.user_id, cart_items.c.product_id],
    set_={"quantity": _upsert.excluded.quantity, "updated_at": func.now()},
)

_gone_lines = rows_of("g", user_id=_ID, product_id=_ID)
_DELETE_CART_LINES = delete(cart_items).where(
    cart_items.c.user_id == _gone_lines.c.user_id,
    cart_items.c.product_id == _gone_lines.c.product_id,
)

_new_orders = rows_of("o", user_id=_ID, command_id=_TEXT, total=_ID, placed_at=_MOMENT)
_ADD_ORDERS = (
    insert(orders)
    .from_select(["user_id", "command_id", "total", "placed_at"], select(_new_orders))
    .returning(orders.c.order_id, orders.c.command_id)
)

_LINE_COLUMNS = (
    "order_id",
    "product_id",
    "user_id",
    "quantity",
    "unit_price",
    "name",
    "placed_at",
)
_new_lines = rows_of(
    "l",
    order_id=_ID,
    product_id=_ID,
    user_id=_ID,
    quantity=_ID,
    unit_price=_ID,
    name=_TEXT,
    placed_at=_MOMENT,
)
_ADD_ORDER_LINES = insert(order_lines).from_select(list(_LINE_COLUMNS), select(_new_lines))

_LOCK_ORDERS = (
    select(
        orders.c.order_id,
        orders.c.user_id,
        orders.c.status,
        orders.c.total,
        orders.c.placed_at,
        orders.c.command_id,
    )
    .where(any_of(orders.c.order_id, "ids", _ID))
    .order_by(orders.c.order_id)
    .with_for_update(key_share=True)
)
# An order's lines never change once placed: read, not locked.
_LINES_OF_ORDERS = (
    select(
        order_lines.c.order_id,
        order_lines.c.product_id,
        order_lines.c.quantity,
        order_lines.c.unit_price,
        order_lines.c.name,
    )
    .where(any_of(order_lines.c.order_id, "ids", _ID))
    .order_by(order_lines.c.order_id, order_lines.c.product_id)
)

_moved = rows_of("mv", order_id=_ID, status=_TEXT, cancelled_at=_MOMENT, shipped_at=_MOMENT)
_MOVE_ORDERS = (
    update(orders)
    .where(orders.c.order_id == _moved.c.order_id)
    .values(
        status=_moved.c.status,
        cancelled_at=_moved.c.cancelled_at,
        shipped_at=_moved.c.shipped_at,
    )
)


class UserRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def existing(self, user_ids: Sequence[int]) -> set[int]:
        result = await self._connection.execute(_EXISTING_USERS, {"ids": list(user_ids)})
        return set(result.scalars())

    async def add_all(self, new: Sequence[NewUser]) -> int:
        """Insert users, skipping ids taken meanwhile (the primary key settles races);
        returns how many were inserted."""
        result = await self._connection.execute(
            _ADD_USERS, bound("u", user_id=[u.user_id for u in new], name=[u.name for u in new])
        )
        return len(result.scalars().all())


class PointsRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def open_accounts(self, user_ids: Sequence[int]) -> None:
        await self._connection.execute(_OPEN_ACCOUNTS, bound("a", user_id=user_ids))

    async def balances_for_update(self, user_ids: Sequence[int]) -> dict[int, int]:
        """Balances of those users that exist, rows locked in user id order."""
        if not user_ids:
            return {}
        rows = await self._connection.execute(_LOCK_BALANCES, {"ids": list(user_ids)})
        return {user_id: balance for user_id, balance in rows}

    async def set_balances(self, balances: Mapping[int, int]) -> None:
        if not balances:
            return
        await self._connection.execute(
            _SET_BALANCES, bound("b", user_id=list(balances), balance=list(balances.values()))
        )

    async def record_transactions(self, rows: Sequence[PointTransaction]) -> list[int]:
        """Record the transactions in one statement; returns their transaction ids in
        the same order (a command has one row per call)."""
        if not rows:
            return []
        result = await self._connection.execute(
            _RECORD_TRANSACTIONS,
            bound(
                "t",
                user_id=[r.user_id for r in rows],
                kind=[r.kind.value for r in rows],
                amount=[r.amount for r in rows],
                balance_after=[r.balance_after for r in rows],
                command_id=[r.command_id for r in rows],
                order_id=[r.order_id for r in rows],
            ),
        )
        ids = {command_id: int(transaction_id) for transaction_id, command_id in result}
        return [ids[r.command_id] for r in rows]


def _products(rows: Sequence[Product]) -> dict[str, list[object]]:
    return bound(
        "p",
        product_id=[p.product_id for p in rows],
        name=[p.name for p in rows],
        price=[p.price for p in rows],
        stock=[p.stock for p in rows],
    )


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """The products that exist among `product_ids`, not locked."""
        if not product_ids:
            return {}
        rows = await self._connection.execute(_GET_PRODUCTS, {"ids": list(product_ids)})
        return {r.product_id: Product(r.product_id, r.name, r.price, r.stock) for r in rows}

    async def lock_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """The products that exist among `product_ids`, locked in id order (no deadlocks)."""
        if not product_ids:
            return {}
        rows = await self._connection.execute(_LOCK_PRODUCTS, {"ids": list(product_ids)})
        return {r.product_id: Product(r.product_id, r.name, r.price, r.stock) for r in rows}

    async def add_all(self, created: Sequence[Product]) -> int:
        """Insert new products, skipping ids created meanwhile; returns how many were
        inserted."""
        result = await self._connection.execute(_ADD_PRODUCTS, _products(created))
        return len(result.scalars().all())

    async def update_all(self, changed: Sequence[Product]) -> None:
        """Write name, price and stock of existing (locked) products."""
        if not changed:
            return
        await self._connection.execute(_UPDATE_PRODUCTS, _products(changed))

    async def set_stocks(self, changed: Sequence[Product]) -> None:
        if not changed:
            return
        await self._connection.execute(
            _SET_STOCKS,
            bound(
                "s",
                product_id=[p.product_id for p in changed],
                stock=[p.stock for p in changed],
            ),
        )


class CartRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def lines_of_users_for_update(self, user_ids: Sequence[int]) -> dict[int, list[CartLine]]:
        """Every cart line of these users, by user then product id, locked."""
        if not user_ids:
            return {}
        lines: dict[int, list[CartLine]] = {}
        rows = await self._connection.execute(_LOCK_CART_LINES, {"ids": list(user_ids)})
        for user_id, product_id, quantity in rows:
            lines.setdefault(user_id, []).append(CartLine(product_id, quantity))
        return lines

    async def set_quantities(self, quantities: Mapping[tuple[int, int], int]) -> None:
        """Set (user id, product id) lines to their units; 0 deletes the line."""
        kept = sorted((line, q) for line, q in quantities.items() if q > 0)
        gone = sorted(line for line, q in quantities.items() if q == 0)
        if kept:
            await self._connection.execute(
                _UPSERT_CART_LINES,
                bound(
                    "k",
                    user_id=[u for (u, _), _ in kept],
                    product_id=[p for (_, p), _ in kept],
                    quantity=[q for _, q in kept],
                ),
            )
        if gone:
            await self._connection.execute(
                _DELETE_CART_LINES,
                bound("g", user_id=[u for u, _ in gone], product_id=[p for _, p in gone]),
            )


class OrderRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_many(self, placed: Sequence[NewOrder]) -> list[int]:
        """Record the orders and their lines in two statements; returns the order ids in
        the same order."""
        if not placed:
            return []
        result = await self._connection.execute(
            _ADD_ORDERS,
            bound(
                "o",
                user_id=[o.user_id for o in placed],
                command_id=[o.command_id for o in placed],
                total=[o.order.total for o in placed],
                placed_at=[o.placed_at for o in placed],
            ),
        )
        ids = {command_id: int(order_id) for order_id, command_id in result}
        order_ids = [ids[o.command_id] for o in placed]
        lines = [
            (
                order_id,
                line.product_id,
                o.user_id,
                line.quantity,
                line.unit_price,
                line.name,
                o.placed_at,
            )
            for order_id, o in zip(order_ids, placed, strict=True)
            for line in o.order.lines
        ]
        await self._connection.execute(
            _ADD_ORDER_LINES,
            bound(
                "l", **{name: [line[i] for line in lines] for i, name in enumerate(_LINE_COLUMNS)}
            ),
        )
        return order_ids

    async def lock_many(self, order_ids: Sequence[int]) -> dict[int, StoredOrder]:
        """The orders that exist among `order_ids`, with their lines, locked in id order."""
        if not order_ids:
            return {}
        ids = {"ids": sorted(set(order_ids))}
        found = (await self._connection.execute(_LOCK_ORDERS, ids)).all()
        if not found:
            return {}
        lines: dict[int, list[PricedLine]] = {}
        for row in await self._connection.execute(_LINES_OF_ORDERS, ids):
            lines.setdefault(row.order_id, []).append(
                PricedLine(row.product_id, row.quantity, row.unit_price, row.name)
            )
        return {
            row.order_id: StoredOrder(
                order_id=row.order_id,
                user_id=row.user_id,
                status=OrderStatus(row.status),
                total=row.total,
                placed_at=row.placed_at,
                payment_reference=row.command_id,
                lines=tuple(lines.get(row.order_id, ())),
            )
            for row in found
        }

    async def record_moves(self, moved: Sequence[StoredOrder], at: datetime) -> None:
        """Write each order's new status, and `at` as when it was cancelled or shipped."""
        if not moved:
            return
        await self._connection.execute(
            _MOVE_ORDERS,
            bound(
                "mv",
                order_id=[o.order_id for o in moved],
                status=[o.status.value for o in moved],
                cancelled_at=[at if o.status is OrderStatus.CANCELLED else None for o in moved],
                shipped_at=[at if o.status is OrderStatus.SHIPPED else None for o in moved],
            ),
        )
