"""History for the order and statement queries: each order's status (every existing one
is placed) and when it was cancelled or shipped, each point transaction's balance after
it and its order, each order line's product name as it was ordered, and the indexes that
keep a user's newest orders and transactions one index range scan away.

Existing rows are filled in: `balance_after` as the running sum of the user's amounts in
transaction order (a balance always equals the sum of its transactions, which `shopflow
check` holds), `order_id` from the order of the same command, and a line's name from the
product's name today, the best there is for orders placed before names were kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("status", sa.String(16), nullable=False, server_default="placed"),
    )
    op.add_column("orders", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("orders", sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_orders_status_known"), "orders", "status IN ('placed', 'cancelled', 'shipped')"
    )
    op.add_column("point_transactions", sa.Column("balance_after", sa.BigInteger(), nullable=True))
    op.add_column("point_transactions", sa.Column("order_id", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE point_transactions AS t SET balance_after = r.running
        FROM (
            SELECT transaction_id,
                   sum(amount) OVER (PARTITION BY user_id ORDER BY transaction_id) AS running
            FROM point_transactions
        ) AS r
        WHERE t.transaction_id = r.transaction_id
        """
    )
    op.execute(
        """
        UPDATE point_transactions AS t SET order_id = o.order_id
        FROM orders AS o
        WHERE t.kind = 'use' AND o.command_id = t.command_id AND o.user_id = t.user_id
        """
    )
    op.alter_column("point_transactions", "balance_after", nullable=False)
    op.create_foreign_key(
        op.f("fk_point_transactions_order_id"),
        "point_transactions",
        "orders",
        ["order_id"],
        ["order_id"],
    )
    op.drop_index("ix_point_transactions_user_id", table_name="point_transactions")
    op.create_index(
        "ix_point_transactions_user_id_transaction_id",
        "point_transactions",
        ["user_id", "transaction_id"],
    )
    op.drop_index("ix_orders_user_id", table_name="orders")
    op.create_index("ix_orders_user_id_order_id", "orders", ["user_id", "order_id"])
    op.add_column("order_lines", sa.Column("name", sa.String(100), nullable=True))
    op.execute(
        """
        UPDATE order_lines AS l SET name = p.name
        FROM products AS p
        WHERE p.product_id = l.product_id
        """
    )
    op.alter_column("order_lines", "name", nullable=False)


def downgrade() -> None:
    op.drop_column("order_lines", "name")
    op.drop_constraint(op.f("ck_orders_status_known"), "orders", type_="check")
    op.drop_column("orders", "shipped_at")
    op.drop_column("orders", "cancelled_at")
    op.drop_column("orders", "status")
    op.drop_index("ix_orders_user_id_order_id", table_name="orders")
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.drop_index("ix_point_transactions_user_id_transaction_id", table_name="point_transactions")
    op.create_index("ix_point_transactions_user_id", "point_transactions", ["user_id"])
    op.drop_constraint(
        op.f("fk_point_transactions_order_id"), "point_transactions", type_="foreignkey"
    )
    op.drop_column("point_transactions", "order_id")
    op.drop_column("point_transactions", "balance_after")
