"""SQLAlchemy Core tables. Alembic migrations (persistence/migrations) create them.

Every table is keyed by the entity its commands are keyed by (user_id or product_id),
so that user-keyed tables can later be sharded by user_id without cross-shard
transactions (docs/design.md, "Beyond one machine").
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from shopflow.domain.order_lifecycle import OrderStatus
from shopflow.domain.points import TransactionKind

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

point_balances = Table(
    "point_balances",
    metadata,
    Column(
        "user_id",
        BigInteger,
        ForeignKey("users.user_id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)

# One row per change of a balance: `amount` is signed (+charge, -use, +refund), so a balance
# always equals the sum of its user's rows, and `balance_after` is that sum up to this
# row (the reconciliation check holds both). A statement pages a user's rows newest
# first by `transaction_id`: one range scan of the (user_id, transaction_id) index.
point_transactions = Table(
    "point_transactions",
    metadata,
    Column("transaction_id", BigInteger, Identity(always=True), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("command_id", String(64), nullable=False),
    # The order a `use` paid for or a `refund` gave back; NULL for a charge.
    Column("order_id", BigInteger, ForeignKey("orders.order_id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        f"kind IN ({', '.join(repr(kind.value) for kind in TransactionKind)})", name="kind_known"
    ),
    Index("ix_point_transactions_user_id_transaction_id", "user_id", "transaction_id"),
)

products = Table(
    "products",
    metadata,
    Column("product_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("stock", BigInteger, nullable=False),
    # Every unit ever added by UpsertProduct: `shopflow check` holds `stock` to it, minus
    # what placed orders took, plus what cancels put back.
    Column("stock_added", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("stock >= 0", name="stock_not_negative"),
    CheckConstraint("price > 0", name="price_positive"),
)

# The idempotency ledger, and the outbox at once: the row that spends a command's id,
# its effects and its serialized result event commit in one transaction. The result is republished
# byte for byte (same event_id) on every redelivery or resend of the command, so a
# crash between commit and publish loses nothing: the redelivered command finds its
# row and publishes the stored result.
processed_commands = Table(
    "processed_commands",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("command_type", String(32), nullable=False),
    Column("entity_key", String(20), nullable=False),
    Column("payload_sha256", LargeBinary(32), nullable=False),
    # Written with the row, in its one INSERT (persistence.ledger); `shopflow check`
    # reports a row without them. Nullable only because rows of before 2026-12-02 were
    # claimed first and filled in later in their transaction.
    Column("event_id", UUID(as_uuid=True), nullable=True),
    Column("result_topic", String(64), nullable=True),
    Column("result_json", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_processed_commands_created_at", "created_at"),
)

# Cart lines, keyed by user: a line that reaches 0 units is deleted.
cart_items = Table(
    "cart_items",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.user_id"), primary_key=True),
    Column("product_id", BigInteger, ForeignKey("products.product_id"), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", BigInteger, Identity(always=True), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), nullable=False),
    Column("command_id", String(64), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, server_default=OrderStatus.PLACED.value),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("shipped_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("total >= 0", name="total_not_negative"),
    CheckConstraint(
        f"status IN ({', '.join(repr(status.value) for status in OrderStatus)})",
        name="status_known",
    ),
    # Cancelled when (and only when) it has a cancelled_at; the same for shipped.
    CheckConstraint(
        "(status = 'cancelled') = (cancelled_at IS NOT NULL) "
        "AND (status = 'shipped') = (shipped_at IS NOT NULL)",
        name="status_moments",
    ),
    # A user's orders, newest first by order_id: one range scan.
    Index("ix_orders_user_id_order_id", "user_id", "order_id"),
    Index("ix_orders_placed_at", "placed_at"),
)

# user_id is repeated on the lines so that they shard with their order (by user).
order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", BigInteger, ForeignKey("orders.order_id"), primary_key=True),
    Column("product_id", BigInteger, ForeignKey("products.product_id"), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    # The product's name when it was ordered (a later rename does not rewrite history).
    Column("name", String(100), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    Index("ix_order_lines_placed_at", "placed_at"),
)

# What the default payment gateway records: one row per successful payment, named by
# the order's command_id (the payment is taken before the order row exists).
payments = Table(
    "payments",
    metadata,
    Column("payment_id", BigInteger, Identity(always=True), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), nullable=False),
    Column("command_id", String(64), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount >= 0", name="amount_not_negative"),
)

# What the default payment gateway records for a cancelled order: its payment given
# back, named by the cancel's command_id. `payment_command_id` (the order's) is unique:
# a payment is refunded at most once.
refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", BigInteger, Identity(always=True), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.user_id"), nullable=False),
    Column("command_id", String(64), nullable=False, unique=True),
    Column("payment_command_id", String(64), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount > 0", name="amount_positive"),
)

# Dead letters, recorded in the transaction of the batch they came from (the outbox for
# them, as processed_commands is for results): what is published is `message_json`, so a
# redelivered batch republishes the same dead letters, never new ones. The whole original
# key and value are kept here even when the published dead letter carries only a prefix.
# Keyed by dead_letter_id (derived from source topic, partition and offset): a source
# record has one row, whatever the number of deliveries.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("dead_letter_id", UUID(as_uuid=True), primary_key=True),
    Column("source_topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("error", Text, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("payload", LargeBinary, nullable=True),  # NULL for a tombstone
    Column("payload_size", Integer, nullable=False),
    Column("payload_sha256", LargeBinary(32), nullable=False),
    Column("payload_truncated", Boolean, nullable=False),
    Column("message_key", LargeBinary, nullable=True),
    Column("message_json", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_dead_letters_received_at", "received_at"),
)
