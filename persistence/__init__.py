"""PostgreSQL: tables, migrations, repositories, the unit of work, the idempotency ledger."""
