"""A user's orders and points statement, newest first, a page at a time (CONTRACT.md, the
HTTP query side). Pages are keyset pages: `before` is the id the page starts below, so a
page is one range scan of the (user_id, id) index however deep it is, and rows inserted
meanwhile never shift a row into a second page or out of all of them. Each read is one
statement (the user, the page and its lines together), so it is consistent on its own.
"""

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Final, TypeVar

from sqlalchemy import BigInteger, Integer, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.limits import MAX_ENTITY_ID
from shopflow.queries.answers import (
    OrderAnswer,
    OrderLineAnswer,
    OrdersAnswer,
    PointTransactionAnswer,
    StatementAnswer,
)

T = TypeVar("T")

PAGE_DEFAULT: Final = 20
PAGE_MAX: Final = 100
# `before` of the first page: above every id an identity column will hand out.
_FROM_THE_TOP: Final = MAX_ENTITY_ID


class Unknown(StrEnum):
    """Why there is nothing to answer: the contract's 404 reasons."""

    USER = "unknown_user"
    ORDER = "unknown_order"


_ORDER_COLUMNS = """o.order_id, o.status, o.placed_at, o.cancelled_at, o.shipped_at, o.total,
       l.product_id, l.name, l.quantity, l.unit_price"""

ORDERS_PAGE = text(
    f"""
    SELECT u.user_id, {_ORDER_COLUMNS}
    FROM users AS u
    LEFT JOIN LATERAL (
        SELECT order_id, status, placed_at, cancelled_at, shipped_at, total
        FROM orders
        WHERE orders.user_id = u.user_id AND orders.order_id < :before
        ORDER BY orders.order_id DESC
        LIMIT :fetch
    ) AS o ON true
    LEFT JOIN order_lines AS l ON l.order_id = o.order_id
    WHERE u.user_id = :user_id
    ORDER BY o.order_id DESC, l.product_id
    """
).bindparams(
    bindparam("user_id", type_=BigInteger()),
    bindparam("before", type_=BigInteger()),
    bindparam("fetch", type_=Integer()),
)

ONE_ORDER = text(
    f"""
    SELECT u.user_id, {_ORDER_COLUMNS}
    FROM users AS u
    LEFT JOIN orders AS o ON o.user_id = u.user_id AND o.order_id = :order_id
    LEFT JOIN order_lines AS l ON l.order_id = o.order_id
    WHERE u.user_id = :user_id
    ORDER BY l.product_id
    """
).bindparams(bindparam("user_id", type_=BigInteger()), bindparam("order_id", type_=BigInteger()))

STATEMENT_PAGE = text(
    """
    SELECT u.user_id, t.transaction_id, t.kind, t.amount, t.balance_after, t.order_id,
           t.command_id, t.created_at
    FROM users AS u
    LEFT JOIN LATERAL (
        SELECT transaction_id, kind, amount, balance_after, order_id, command_id, created_at
        FROM point_transactions
        WHERE point_transactions.user_id = u.user_id
          AND point_transactions.transaction_id < :before
        ORDER BY point_transactions.transaction_id DESC
        LIMIT :fetch
    ) AS t ON true
    WHERE u.user_id = :user_id
    ORDER BY t.transaction_id DESC
    """
).bindparams(
    bindparam("user_id", type_=BigInteger()),
    bindparam("before", type_=BigInteger()),
    bindparam("fetch", type_=Integer()),
)


def _orders_of(rows: Sequence[Any]) -> list[OrderAnswer]:
    """The rows of orders and their lines (in order) as answers, one per order."""
    answers: list[OrderAnswer] = []
    for row in rows:
        if row.order_id is None:
            continue
        if not answers or answers[-1].order_id != row.order_id:
            answers.append(
                OrderAnswer(
                    order_id=row.order_id,
                    user_id=row.user_id,
                    status=row.status,
                    placed_at=row.placed_at,
                    cancelled_at=row.cancelled_at,
                    shipped_at=row.shipped_at,
                    total=row.total,
                    items=[],
                )
            )
        if row.product_id is not None:
            answers[-1].items.append(
                OrderLineAnswer(
                    product_id=row.product_id,
                    name=row.name,
                    quantity=row.quantity,
                    unit_price=row.unit_price,
                )
            )
    return answers


def _page(items: list[T], limit: int, id_of: Callable[[T], int]) -> tuple[list[T], int | None]:
    """The first `limit` of `items` (fetched one more than that), and the `before` of the
    next page: None when there is none."""
    page = items[:limit]
    return page, id_of(page[-1]) if len(items) > limit else None


class History:
    def __init__(self, engine: AsyncEngine) -> None:
        # One statement a read: autocommit, no BEGIN and ROLLBACK around it.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _rows(self, statement: TextClause, parameters: dict[str, int]) -> Sequence[Any]:
        async with self._engine.connect() as connection:
            return (await connection.execute(statement, parameters)).all()

    async def _page_rows(
        self, statement: TextClause, user_id: int, limit: int, before: int | None
    ) -> Sequence[Any]:
        return await self._rows(
            statement, {"user_id": user_id, "before": before or _FROM_THE_TOP, "fetch": limit + 1}
        )

    async def orders(
        self, user_id: int, *, limit: int = PAGE_DEFAULT, before: int | None = None
    ) -> OrdersAnswer | Unknown:
        rows = await self._page_rows(ORDERS_PAGE, user_id, limit, before)
        if not rows:
            return Unknown.USER
        page, next_before = _page(_orders_of(rows), limit, lambda o: o.order_id)
        return OrdersAnswer(user_id=user_id, orders=page, next_before=next_before)

    async def order(self, user_id: int, order_id: int) -> OrderAnswer | Unknown:
        rows = await self._rows(ONE_ORDER, {"user_id": user_id, "order_id": order_id})
        if not rows:
            return Unknown.USER
        found = _orders_of(rows)
        return found[0] if found else Unknown.ORDER

    async def statement(
        self, user_id: int, *, limit: int = PAGE_DEFAULT, before: int | None = None
    ) -> StatementAnswer | Unknown:
        rows = await self._page_rows(STATEMENT_PAGE, user_id, limit, before)
        if not rows:
            return Unknown.USER
        transactions = [
            PointTransactionAnswer(
                transaction_id=row.transaction_id,
                kind=row.kind,
                amount=row.amount,
                balance_after=row.balance_after,
                order_id=row.order_id,
                command_id=row.command_id,
                occurred_at=row.created_at,
            )
            for row in rows
            if row.transaction_id is not None
        ]
        page, next_before = _page(transactions, limit, lambda t: t.transaction_id)
        return StatementAnswer(user_id=user_id, transactions=page, next_before=next_before)
