"""Cart lines, orders and their lines, payments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cart_items",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_items_quantity_positive")),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_cart_items_user_id"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.product_id"], name="fk_cart_items_product_id"
        ),
        sa.PrimaryKeyConstraint("user_id", "product_id", name="pk_cart_items"),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total >= 0", name=op.f("ck_orders_total_not_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_orders_user_id"),
        sa.PrimaryKeyConstraint("order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.create_index("ix_orders_placed_at", "orders", ["placed_at"])
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity_positive")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name="fk_order_lines_order_id"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.product_id"], name="fk_order_lines_product_id"
        ),
        sa.PrimaryKeyConstraint("order_id", "product_id", name="pk_order_lines"),
    )
    op.create_index("ix_order_lines_placed_at", "order_lines", ["placed_at"])
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payments_amount_not_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_payments_user_id"),
        sa.PrimaryKeyConstraint("payment_id", name="pk_payments"),
        sa.UniqueConstraint("command_id", name="uq_payments_command_id"),
    )


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_index("ix_order_lines_placed_at", table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_index("ix_orders_placed_at", table_name="orders")
    op.drop_index("ix_orders_user_id", table_name="orders")
    op.drop_table("orders")
    op.drop_table("cart_items")
