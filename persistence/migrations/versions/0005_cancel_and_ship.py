"""Cancelling and shipping: a point transaction may be a `refund`, the default payment
gateway records each refund (one per payment at most, which the unique payment reference
holds), an order's timestamps agree with its status, and each product counts the units
ever added to it (`stock_added`), so that `shopflow check` can hold its stock to what was
added, taken by orders and put back by cancels.

Existing products get the units they hold plus those their orders took (no order was
cancelled before this revision).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        op.f("ck_point_transactions_kind_known"), "point_transactions", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_point_transactions_kind_known"),
        "point_transactions",
        "kind IN ('charge', 'use', 'refund')",
    )
    op.create_check_constraint(
        op.f("ck_orders_status_moments"),
        "orders",
        "(status = 'cancelled') = (cancelled_at IS NOT NULL) "
        "AND (status = 'shipped') = (shipped_at IS NOT NULL)",
    )
    op.add_column("products", sa.Column("stock_added", sa.BigInteger(), nullable=True))
    # One pass over the lines (grouped), not a subquery per product: order_lines has no
    # index by product alone, and a correlated sum scanned them once per product.
    op.execute("UPDATE products SET stock_added = stock")
    op.execute(
        """
        UPDATE products AS p SET stock_added = p.stock + t.taken
        FROM (SELECT product_id, sum(quantity) AS taken FROM order_lines GROUP BY product_id) AS t
        WHERE t.product_id = p.product_id
        """
    )
    op.alter_column("products", "stock_added", nullable=False)
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("payment_command_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_refunds_user_id_users")
        ),
        sa.PrimaryKeyConstraint("refund_id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("command_id", name=op.f("uq_refunds_command_id")),
        sa.UniqueConstraint("payment_command_id", name=op.f("uq_refunds_payment_command_id")),
    )


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_column("products", "stock_added")
    op.drop_constraint(op.f("ck_orders_status_moments"), "orders", type_="check")
    op.drop_constraint(
        op.f("ck_point_transactions_kind_known"), "point_transactions", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_point_transactions_kind_known"), "point_transactions", "kind IN ('charge', 'use')"
    )
