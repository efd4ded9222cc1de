"""Reconciliation (`shopflow check`): the invariants the books must keep, checked over the
whole database. Each rule is one query returning the rows that break it (at most
`limit_per_rule`), all in one REPEATABLE READ snapshot, so a command committing meanwhile
cannot make two rules disagree. The rules are the `RULES` below, each with its meaning.
Not checked: that every order's command_id is in the ledger, since `purge-ledger`
forgets ids after the retention period.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.domain.order_lifecycle import OrderStatus
from shopflow.domain.points import TransactionKind
from shopflow.persistence.tables import (
    order_lines,
    orders,
    payments,
    point_balances,
    point_transactions,
    processed_commands,
    products,
    refunds,
)


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


@dataclass(frozen=True)
class _Rule:
    name: str
    query: Callable[[int], Select[Any]]
    describe: Callable[[Mapping[str, Any]], str]


def _balance_matches_transactions(limit: int) -> Select[Any]:
    """Every point balance equals the sum of its user's signed transactions (no balance
    row counts as 0, and so do no transactions)."""
    sums = (
        select(
            point_transactions.c.user_id,
            func.sum(point_transactions.c.amount).label("transactions_sum"),
        )
        .group_by(point_transactions.c.user_id)
        .subquery()
    )
    user_id = func.coalesce(point_balances.c.user_id, sums.c.user_id)
    balance = func.coalesce(point_balances.c.balance, 0)
    transactions_sum = func.coalesce(sums.c.transactions_sum, 0)
    return (
        select(
            user_id.label("user_id"),
            point_balances.c.balance,
            transactions_sum.label("transactions_sum"),
        )
        .select_from(
            point_balances.outerjoin(sums, sums.c.user_id == point_balances.c.user_id, full=True)
        )
        .where(balance != transactions_sum)
        .order_by(user_id)
        .limit(limit)
    )


def _balance_after_is_running_sum(limit: int) -> Select[Any]:
    """Each point transaction's `balance_after` is its user's balance after it: the sum
    of the user's amounts up to it, in transaction order."""
    running = select(
        point_transactions.c.transaction_id,
        point_transactions.c.user_id,
        point_transactions.c.balance_after,
        func.sum(point_transactions.c.amount)
        .over(
            partition_by=point_transactions.c.user_id,
            order_by=point_transactions.c.transaction_id,
        )
        .label("running_sum"),
    ).subquery()
    return (
        select(running)
        .where(running.c.balance_after != running.c.running_sum)
        .order_by(running.c.transaction_id)
        .limit(limit)
    )


def _stock_not_negative(limit: int) -> Select[Any]:
    """No product's stock is below zero."""
    return (
        select(products.c.product_id, products.c.stock)
        .where(products.c.stock < 0)
        .order_by(products.c.product_id)
        .limit(limit)
    )


def _balance_not_negative(limit: int) -> Select[Any]:
    """No balance is below zero."""
    return (
        select(point_balances.c.user_id, point_balances.c.balance)
        .where(point_balances.c.balance < 0)
        .order_by(point_balances.c.user_id)
        .limit(limit)
    )


def _order_total_matches_lines(limit: int) -> Select[Any]:
    """An order's total is the sum of quantity * unit_price of its lines."""
    sums = (
        select(
            order_lines.c.order_id,
            func.sum(order_lines.c.quantity * order_lines.c.unit_price).label("lines_sum"),
        )
        .group_by(order_lines.c.order_id)
        .subquery()
    )
    return (
        select(orders.c.order_id, orders.c.user_id, orders.c.total, sums.c.lines_sum)
        .join(sums, sums.c.order_id == orders.c.order_id)
        .where(orders.c.total != sums.c.lines_sum)
        .order_by(orders.c.order_id)
        .limit(limit)
    )


def _order_has_lines(limit: int) -> Select[Any]:
    """Every order has at least one line."""
    has_line = select(literal(1)).where(order_lines.c.order_id == orders.c.order_id).exists()
    return (
        select(orders.c.order_id, orders.c.user_id, orders.c.command_id)
        .where(~has_line)
        .order_by(orders.c.order_id)
        .limit(limit)
    )


def _order_matched_once(
    table: Table, sign: int, limit: int, *conditions: ColumnElement[bool]
) -> Select[Any]:
    """Orders without exactly one row of `table` under their command_id, by the order's
    user, whose amount is `sign` times the order total."""
    per_command = (
        select(
            table.c.command_id,
            func.count().label("count"),
            func.sum(table.c.amount).label("amount"),
            func.min(table.c.user_id).label("min_user_id"),
            func.max(table.c.user_id).label("max_user_id"),
        )
        .where(*conditions)
        .group_by(table.c.command_id)
        .subquery()
    )
    count = func.coalesce(per_command.c.count, 0)
    return (
        select(
            orders.c.order_id,
            orders.c.user_id,
            orders.c.command_id,
            orders.c.total,
            count.label("count"),
            per_command.c.amount,
            per_command.c.min_user_id.label("by_user_id"),
        )
        .select_from(orders.outerjoin(per_command, per_command.c.command_id == orders.c.command_id))
        .where(
            or_(
                count != 1,
                per_command.c.amount != sign * orders.c.total,
                per_command.c.min_user_id != orders.c.user_id,
                per_command.c.max_user_id != orders.c.user_id,
            )
        )
        .order_by(orders.c.order_id)
        .limit(limit)
    )


def _order_paid_once(limit: int) -> Select[Any]:
    """Every order has exactly one payment (by its command_id), of its user, of its total."""
    return _order_matched_once(payments, 1, limit)


def _order_points_used_once(limit: int) -> Select[Any]:
    """Every order has exactly one point transaction of kind `use` with its command_id, of
    its user, whose amount is -total."""
    return _order_matched_once(
        point_transactions, -1, limit, point_transactions.c.kind == TransactionKind.USE.value
    )


def _stock_matches_movements(limit: int) -> Select[Any]:
    """Each product's stock is what upserts added, minus what placed orders took, plus
    what cancels put back: the units added less the lines of orders not cancelled."""
    kept = (
        select(order_lines.c.product_id, func.sum(order_lines.c.quantity).label("taken"))
        .join(orders, orders.c.order_id == order_lines.c.order_id)
        .where(orders.c.status != OrderStatus.CANCELLED.value)
        .group_by(order_lines.c.product_id)
        .subquery()
    )
    taken = func.coalesce(kept.c.taken, 0)
    return (
        select(
            products.c.product_id,
            products.c.stock,
            products.c.stock_added,
            taken.label("taken"),
        )
        .select_from(products.outerjoin(kept, kept.c.product_id == products.c.product_id))
        .where(products.c.stock != products.c.stock_added - taken)
        .order_by(products.c.product_id)
        .limit(limit)
    )


def _refunded_once_if_cancelled(limit: int) -> Select[Any]:
    """A cancelled order has exactly one `refund` point transaction linked to it, of its
    user, of +total, and exactly one refund of its payment (by the payment's command_id);
    an order not cancelled has neither."""
    t = point_transactions.c
    refund_moves = (
        select(
            t.order_id,
            func.count().label("count"),
            func.sum(t.amount).label("amount"),
            func.min(t.user_id).label("min_user_id"),
            func.max(t.user_id).label("max_user_id"),
        )
        .where(t.kind == TransactionKind.REFUND.value)
        .group_by(t.order_id)
        .subquery()
    )
    moves = func.coalesce(refund_moves.c.count, 0)
    given_back = func.coalesce(refunds.c.amount, 0)
    cancelled = orders.c.status == OrderStatus.CANCELLED.value
    return (
        select(
            orders.c.order_id,
            orders.c.user_id,
            orders.c.status,
            orders.c.total,
            moves.label("count"),
            refund_moves.c.amount,
            given_back.label("refunded"),
        )
        .select_from(
            orders.outerjoin(refund_moves, refund_moves.c.order_id == orders.c.order_id).outerjoin(
                refunds, refunds.c.payment_command_id == orders.c.command_id
            )
        )
        .where(
            or_(
                and_(
                    cancelled,
                    or_(
                        moves != 1,
                        refund_moves.c.amount != orders.c.total,
                        refund_moves.c.min_user_id != orders.c.user_id,
                        refund_moves.c.max_user_id != orders.c.user_id,
                        given_back != orders.c.total,
                        refunds.c.user_id != orders.c.user_id,
                    ),
                ),
                and_(~cancelled, or_(moves != 0, refunds.c.refund_id.is_not(None))),
            )
        )
        .order_by(orders.c.order_id)
        .limit(limit)
    )


def _order_cancelled_or_shipped_not_both(limit: int) -> Select[Any]:
    """An order is placed, cancelled or shipped, with the moment of its state and no
    other: never both cancelled and shipped (a CHECK holds it too; this watches it)."""
    o = orders.c
    return (
        select(o.order_id, o.user_id, o.status, o.cancelled_at, o.shipped_at)
        .where(
            or_(
                (o.status == OrderStatus.CANCELLED.value) != o.cancelled_at.is_not(None),
                (o.status == OrderStatus.SHIPPED.value) != o.shipped_at.is_not(None),
            )
        )
        .order_by(o.order_id)
        .limit(limit)
    )


def _ledger_result_stored(limit: int) -> Select[Any]:
    """Every spent command_id has its result stored (event_id, result_topic and
    result_json, written in the row's one INSERT)."""
    c = processed_commands.c
    return (
        select(
            c.command_id,
            c.command_type,
            c.entity_key,
            c.event_id,
            c.result_topic,
            c.result_json.is_(None).label("no_result_json"),
        )
        .where(
            or_(
                c.event_id.is_(None),
                c.result_topic.is_(None),
                c.result_json.is_(None),
            )
        )
        .order_by(c.command_id)
        .limit(limit)
    )


def _missing_result(row: Mapping[str, Any]) -> str:
    missing = [name for name in ("event_id", "result_topic") if row[name] is None]
    if row["no_result_json"]:
        missing.append("result_json")
    return ", ".join(missing)


RULES: tuple[_Rule, ...] = (
    _Rule(
        "balance_matches_transactions",
        _balance_matches_transactions,
        lambda r: (
            f"user_id={r['user_id']}: balance {r['balance']}, "
            f"transactions sum to {r['transactions_sum']}"
        ),
    ),
    _Rule(
        "balance_after_is_running_sum",
        _balance_after_is_running_sum,
        lambda r: (
            f"user_id={r['user_id']} transaction_id={r['transaction_id']}: balance_after "
            f"{r['balance_after']}, running sum {r['running_sum']}"
        ),
    ),
    _Rule(
        "stock_not_negative",
        _stock_not_negative,
        lambda r: f"product_id={r['product_id']}: stock {r['stock']}",
    ),
    _Rule(
        "balance_not_negative",
        _balance_not_negative,
        lambda r: f"user_id={r['user_id']}: balance {r['balance']}",
    ),
    _Rule(
        "order_total_matches_lines",
        _order_total_matches_lines,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']}: total {r['total']}, "
            f"lines sum to {r['lines_sum']}"
        ),
    ),
    _Rule(
        "order_has_lines",
        _order_has_lines,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']} "
            f"command_id={r['command_id']}: no lines"
        ),
    ),
    _Rule(
        "order_paid_once",
        _order_paid_once,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']} "
            f"command_id={r['command_id']}: total {r['total']}, {r['count']} payment(s) "
            f"of {r['amount']} by user_id={r['by_user_id']}"
        ),
    ),
    _Rule(
        "order_points_used_once",
        _order_points_used_once,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']} "
            f"command_id={r['command_id']}: total {r['total']}, {r['count']} 'use' "
            f"transaction(s) of {r['amount']} by user_id={r['by_user_id']}"
        ),
    ),
    _Rule(
        "stock_matches_movements",
        _stock_matches_movements,
        lambda r: (
            f"product_id={r['product_id']}: stock {r['stock']}, added {r['stock_added']}, "
            f"taken by orders not cancelled {r['taken']}"
        ),
    ),
    _Rule(
        "refunded_once_if_cancelled",
        _refunded_once_if_cancelled,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']} ({r['status']}): total "
            f"{r['total']}, {r['count']} 'refund' transaction(s) of {r['amount']}, "
            f"payment refunded {r['refunded']}"
        ),
    ),
    _Rule(
        "order_cancelled_or_shipped_not_both",
        _order_cancelled_or_shipped_not_both,
        lambda r: (
            f"order_id={r['order_id']} user_id={r['user_id']}: status {r['status']}, "
            f"cancelled_at {r['cancelled_at']}, shipped_at {r['shipped_at']}"
        ),
    ),
    _Rule(
        "ledger_result_stored",
        _ledger_result_stored,
        lambda r: (
            f"command_id={r['command_id']} ({r['command_type']}, key {r['entity_key']}): "
            f"no stored {_missing_result(r)}"
        ),
    ),
)


async def find_violations(engine: AsyncEngine, *, limit_per_rule: int = 20) -> list[Violation]:
    """Every rule's violations (at most `limit_per_rule` each), rules in RULES order."""
    found: list[Violation] = []
    snapshot = engine.execution_options(isolation_level="REPEATABLE READ")
    async with snapshot.connect() as connection, connection.begin():
        for rule in RULES:
            result = await connection.execute(rule.query(limit_per_rule))
            found.extend(Violation(rule.name, rule.describe(row)) for row in result.mappings())
    return found


def describe(violations: Sequence[Violation]) -> str:
    """A report for people: the violations grouped by rule, or that there are none."""
    if not violations:
        return "reconciliation: no violations"
    by_rule: dict[str, list[str]] = {}
    for violation in violations:
        by_rule.setdefault(violation.rule, []).append(violation.detail)
    lines = [
        f"reconciliation: {len(violations)} violation(s) of {len(by_rule)} rule(s) "
        "(at most limit_per_rule shown per rule)"
    ]
    for rule, details in by_rule.items():
        lines.append(f"  {rule} ({len(details)}):")
        lines.extend(f"    - {detail}" for detail in details)
    return "\n".join(lines)
