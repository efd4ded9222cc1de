"""Reconciliation: consistent books pass; each kind of broken row is reported by its rule.

Broken rows go into a database of this module's own (created, migrated and dropped
here), never into the session's database, which is checked as a whole at session end.
"""

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import insert, make_url, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shopflow.persistence.migrate import upgrade_to_head
from shopflow.persistence.reconciliation import Violation, describe, find_violations
from shopflow.persistence.tables import (
    order_lines,
    orders,
    payments,
    point_balances,
    point_transactions,
    processed_commands,
    products,
    users,
)
from shopflow.runtime import Runtime
from shopflow.testing.servers import Endpoints
from tests.support.ids import RUN_ID, new_command_id, new_entity_id
from tests.support.seeding import (
    balance_after,
    names_of,
    seed_cancel,
    seed_order,
    seed_product,
    seed_user,
)

PLACED_AT = datetime(2030, 6, 1, 12, tzinfo=UTC)
EVERYTHING = 1_000_000


def mentions(violation: Violation, name: str, value: object) -> bool:
    return re.search(rf"\b{name}={re.escape(str(value))}(?![\w-])", violation.detail) is not None


def reported(violations: list[Violation], rule: str, name: str, value: object) -> bool:
    return any(v.rule == rule and mentions(v, name, value) for v in violations)


async def test_consistent_books_in_the_session_database_are_not_reported(
    service: Runtime,
) -> None:
    async with service.engine.begin() as connection:
        user_id = await seed_user(connection, balance=5_000)
        mug = await seed_product(connection, name="Mug", price=300, stock=10)
        pot = await seed_product(connection, name="Pot", price=1250, stock=10)
        order_id = await seed_order(connection, user_id, [(mug, 2, 300), (pot, 1, 1250)], PLACED_AT)

    violations = await find_violations(service.engine, limit_per_rule=EVERYTHING)

    ours = [
        v
        for v in violations
        if mentions(v, "user_id", user_id)
        or mentions(v, "order_id", order_id)
        or mentions(v, "product_id", mug)
        or mentions(v, "product_id", pot)
    ]
    assert ours == [], describe(ours)


# --- a database of our own, with broken rows ---------------------------------------


@pytest.fixture(scope="module")
async def scratch_engine(endpoints: Endpoints) -> AsyncIterator[AsyncEngine]:
    database = f"shopflow_reconcile_{RUN_ID}_{secrets.token_hex(3)}"
    admin = create_async_engine(endpoints.database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(endpoints.database_url).set(database=database)
    engine = create_async_engine(url.render_as_string(hide_password=False))
    try:
        await upgrade_to_head(engine)
        yield engine
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


class Broken:
    """The ids of the rows seeded into the scratch database, broken and not."""

    consistent_user: int
    consistent_order: int
    balance_off_user: int
    balance_without_transactions_user: int
    total_off_order: int
    lineless_order: int
    unpaid_order: int
    underpaid_order: int
    no_points_use_order: int
    unfinished_command: str
    negative_stock_product: int
    negative_balance_user: int
    balance_after_off_user: int
    stock_off_product: int
    cancelled_unrefunded_order: int
    placed_refunded_order: int
    cancelled_and_shipped_order: int


@pytest.fixture(scope="module")
async def broken(scratch_engine: AsyncEngine) -> Broken:
    ids = Broken()
    async with scratch_engine.begin() as connection:
        mug = await seed_product(connection, name="Mug", price=300, stock=10)

        ids.consistent_user = await seed_user(connection, balance=5_000)
        ids.consistent_order = await seed_order(
            connection, ids.consistent_user, [(mug, 2, 300)], PLACED_AT
        )

        # A balance of 500 whose only transaction is a charge of 400.
        ids.balance_off_user = await seed_user(connection, balance=400)
        await connection.execute(
            point_balances.update()
            .where(point_balances.c.user_id == ids.balance_off_user)
            .values(balance=500)
        )
        # A balance of 100 without any transaction.
        ids.balance_without_transactions_user = new_entity_id()
        await connection.execute(
            insert(users).values(user_id=ids.balance_without_transactions_user, name="No tx")
        )
        await connection.execute(
            insert(point_balances).values(
                user_id=ids.balance_without_transactions_user, balance=100
            )
        )

        # Orders of a user whose books are otherwise right: each is paid with points
        # (so the balance agrees with the transactions) and breaks one order rule.
        payer = await seed_user(connection, balance=100_000)
        ids.total_off_order = await _order(
            connection, payer, total=1_000, lines=[(mug, 3, 300)], paid=1_000, used=1_000
        )
        ids.lineless_order = await _order(
            connection, payer, total=600, lines=[], paid=600, used=600
        )
        ids.unpaid_order = await _order(
            connection, payer, total=600, lines=[(mug, 2, 300)], paid=None, used=600
        )
        ids.underpaid_order = await _order(
            connection, payer, total=600, lines=[(mug, 2, 300)], paid=500, used=600
        )
        ids.no_points_use_order = await _order(
            connection, payer, total=600, lines=[(mug, 2, 300)], paid=600, used=None
        )

        # A balance and transactions that agree, but a second charge whose balance_after
        # is not the running sum.
        ids.balance_after_off_user = await seed_user(connection, balance=300)
        await connection.execute(
            insert(point_transactions).values(
                user_id=ids.balance_after_off_user,
                kind="charge",
                amount=100,
                balance_after=999,
                command_id=new_command_id("charge"),
            )
        )
        await connection.execute(
            point_balances.update()
            .where(point_balances.c.user_id == ids.balance_after_off_user)
            .values(balance=400)
        )

        # A product whose stock moved with no order, upsert or cancel behind it.
        ids.stock_off_product = await seed_product(connection, name="Leak", stock=10)
        await connection.execute(
            update(products).where(products.c.product_id == ids.stock_off_product).values(stock=9)
        )
        # A cancelled order whose stock came back but whose points and payment did not.
        pot = await seed_product(connection, name="Pot", price=100, stock=5)
        ids.cancelled_unrefunded_order = await seed_order(
            connection, payer, [(pot, 1, 100)], PLACED_AT
        )
        await connection.execute(
            update(orders)
            .where(orders.c.order_id == ids.cancelled_unrefunded_order)
            .values(status="cancelled", cancelled_at=PLACED_AT)
        )
        await connection.execute(
            update(products).where(products.c.product_id == pot).values(stock=products.c.stock + 1)
        )
        # A placed order refunded anyway (points and payment), the balance agreeing.
        ids.placed_refunded_order = await seed_order(connection, payer, [(mug, 1, 300)], PLACED_AT)
        refund_id = new_command_id("refund")
        await connection.execute(
            insert(point_transactions).values(
                user_id=payer,
                kind="refund",
                amount=300,
                balance_after=await balance_after(connection, payer, 300),
                command_id=refund_id,
                order_id=ids.placed_refunded_order,
            )
        )
        await connection.execute(
            point_balances.update()
            .where(point_balances.c.user_id == payer)
            .values(balance=point_balances.c.balance + 300)
        )

        # A spent command_id without its stored result.
        ids.unfinished_command = new_command_id("unfinished")
        await connection.execute(
            insert(processed_commands).values(
                command_id=ids.unfinished_command,
                command_type="ChargePoints",
                entity_key=str(payer),
                payload_sha256=secrets.token_bytes(32),
                event_id=uuid4(),
                result_topic="shop.points.events",
                result_json=None,
            )
        )

        # Below zero: only possible once the CHECK constraints are gone (this
        # database is ours alone), which is what the rules guard against.
        await _drop_check(
            connection,
            "orders",
            "(((status)::text = 'cancelled'::text) = (cancelled_at IS NOT NULL)) AND "
            "(((status)::text = 'shipped'::text) = (shipped_at IS NOT NULL))",
        )
        ids.cancelled_and_shipped_order = await seed_order(
            connection, ids.consistent_user, [(mug, 1, 300)], PLACED_AT
        )
        await seed_cancel(connection, ids.cancelled_and_shipped_order, PLACED_AT)
        await connection.execute(
            update(orders)
            .where(orders.c.order_id == ids.cancelled_and_shipped_order)
            .values(shipped_at=PLACED_AT)
        )
        await _drop_check(connection, "products", "stock >= 0")
        await _drop_check(connection, "point_balances", "balance >= 0")
        ids.negative_stock_product = await seed_product(connection, name="Oversold", stock=-2)
        ids.negative_balance_user = await seed_user(connection, balance=50)
        await seed_order(connection, ids.negative_balance_user, [(mug, 1, 80)], PLACED_AT)
    return ids


async def _drop_check(connection: AsyncConnection, table: str, condition: str) -> None:
    """Drop the CHECK constraint of `table` that reads `condition`, whatever its name."""
    names = (
        (
            await connection.execute(
                text(
                    "SELECT conname FROM pg_constraint WHERE contype = 'c'"
                    " AND conrelid = CAST(:table AS regclass)"
                    " AND pg_get_constraintdef(oid) = :definition"
                ),
                {"table": table, "definition": f"CHECK (({condition}))"},
            )
        )
        .scalars()
        .all()
    )
    assert len(names) == 1, names
    await connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{names[0]}"'))


async def _order(
    connection: AsyncConnection,
    user_id: int,
    *,
    total: int,
    lines: list[tuple[int, int, int]],
    paid: int | None,
    used: int | None,
) -> int:
    """An order with exactly the rows given (None: no such row); the balance pays `used`."""
    command_id = new_command_id("order")
    order_id: int = (
        await connection.execute(
            insert(orders)
            .values(user_id=user_id, command_id=command_id, total=total, placed_at=PLACED_AT)
            .returning(orders.c.order_id)
        )
    ).scalar_one()
    names = await names_of(connection, lines)
    for product_id, quantity, unit_price in lines:
        await connection.execute(
            insert(order_lines).values(
                order_id=order_id,
                product_id=product_id,
                user_id=user_id,
                quantity=quantity,
                unit_price=unit_price,
                name=names[product_id],
                placed_at=PLACED_AT,
            )
        )
        # The units it took, counted as added before it (the stock stays as it was).
        await connection.execute(
            update(products)
            .where(products.c.product_id == product_id)
            .values(stock_added=products.c.stock_added + quantity)
        )
    if paid is not None:
        await connection.execute(
            insert(payments).values(user_id=user_id, command_id=command_id, amount=paid)
        )
    if used is not None:
        await connection.execute(
            insert(point_transactions).values(
                user_id=user_id,
                kind="use",
                amount=-used,
                balance_after=await balance_after(connection, user_id, -used),
                command_id=command_id,
                order_id=order_id,
            )
        )
        await connection.execute(
            point_balances.update()
            .where(point_balances.c.user_id == user_id)
            .values(balance=point_balances.c.balance - used)
        )
    return order_id


async def test_a_balance_that_disagrees_with_its_transactions_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    rule = "balance_matches_transactions"
    assert reported(violations, rule, "user_id", broken.balance_off_user)
    assert reported(violations, rule, "user_id", broken.balance_without_transactions_user)


async def test_a_transaction_whose_balance_after_is_not_the_running_sum_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(
        violations, "balance_after_is_running_sum", "user_id", broken.balance_after_off_user
    )


async def test_an_order_whose_total_differs_from_its_lines_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "order_total_matches_lines", "order_id", broken.total_off_order)


async def test_an_order_without_lines_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "order_has_lines", "order_id", broken.lineless_order)


async def test_an_order_without_a_payment_or_paid_the_wrong_amount_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "order_paid_once", "order_id", broken.unpaid_order)
    assert reported(violations, "order_paid_once", "order_id", broken.underpaid_order)


async def test_an_order_without_its_points_use_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "order_points_used_once", "order_id", broken.no_points_use_order)


async def test_stock_that_moved_without_an_order_or_a_cancel_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "stock_matches_movements", "product_id", broken.stock_off_product)


async def test_a_cancel_without_its_refund_and_a_refund_without_its_cancel_are_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    rule = "refunded_once_if_cancelled"
    assert reported(violations, rule, "order_id", broken.cancelled_unrefunded_order)
    assert reported(violations, rule, "order_id", broken.placed_refunded_order)


async def test_an_order_both_cancelled_and_shipped_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    rule = "order_cancelled_or_shipped_not_both"
    assert reported(violations, rule, "order_id", broken.cancelled_and_shipped_order)


async def test_a_ledger_row_without_its_result_is_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "ledger_result_stored", "command_id", broken.unfinished_command)


async def test_negative_stock_and_negative_balance_are_reported(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert reported(violations, "stock_not_negative", "product_id", broken.negative_stock_product)
    assert reported(violations, "balance_not_negative", "user_id", broken.negative_balance_user)


async def test_each_broken_row_is_reported_by_its_rule_only_and_nothing_else_is(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine)

    assert sorted((v.rule, _subject(v)) for v in violations) == sorted(
        [
            ("balance_matches_transactions", f"user_id={broken.balance_off_user}"),
            (
                "balance_matches_transactions",
                f"user_id={broken.balance_without_transactions_user}",
            ),
            ("stock_not_negative", f"product_id={broken.negative_stock_product}"),
            ("balance_not_negative", f"user_id={broken.negative_balance_user}"),
            ("order_total_matches_lines", f"order_id={broken.total_off_order}"),
            ("order_has_lines", f"order_id={broken.lineless_order}"),
            ("order_paid_once", f"order_id={broken.unpaid_order}"),
            ("order_paid_once", f"order_id={broken.underpaid_order}"),
            ("order_points_used_once", f"order_id={broken.no_points_use_order}"),
            ("ledger_result_stored", f"command_id={broken.unfinished_command}"),
            ("balance_after_is_running_sum", f"user_id={broken.balance_after_off_user}"),
            ("stock_matches_movements", f"product_id={broken.stock_off_product}"),
            ("refunded_once_if_cancelled", f"order_id={broken.cancelled_unrefunded_order}"),
            ("refunded_once_if_cancelled", f"order_id={broken.placed_refunded_order}"),
            (
                "order_cancelled_or_shipped_not_both",
                f"order_id={broken.cancelled_and_shipped_order}",
            ),
        ]
    ), describe(violations)


async def test_the_limit_per_rule_caps_each_rule_and_describe_names_them(
    scratch_engine: AsyncEngine, broken: Broken
) -> None:
    violations = await find_violations(scratch_engine, limit_per_rule=1)
    report = describe(violations)

    assert [v.rule for v in violations].count("balance_matches_transactions") == 1
    assert [v.rule for v in violations].count("order_paid_once") == 1
    assert "order_has_lines" in report
    assert str(broken.lineless_order) in report
    assert describe([]) == "reconciliation: no violations"


def _subject(violation: Violation) -> str:
    """The first `name=value` of a violation's detail: the row it is about."""
    return violation.detail.split(":", 1)[0].split(" ", 1)[0]
