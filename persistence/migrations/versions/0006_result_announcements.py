"""The ledger announces each command id it spends: a statement-level trigger on
`processed_commands` sends `NOTIFY shopflow_results` with the ids the statement inserted
(space-separated, at most 100 to a notification, well under PostgreSQL's 8,000-byte
payload), delivered when the transaction commits and only if it does. A `shopflow serve`
process listens on one connection and wakes the requests waiting for those results
(`persistence/ledger_listener.py`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION announce_spent_commands() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('shopflow_results', string_agg(command_id, ' '))
            FROM (
                SELECT command_id, (row_number() OVER () - 1) / 100 AS chunk FROM spent
            ) AS numbered
            GROUP BY chunk;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER processed_commands_announce
        AFTER INSERT ON processed_commands
        REFERENCING NEW TABLE AS spent
        FOR EACH STATEMENT EXECUTE FUNCTION announce_spent_commands()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER processed_commands_announce ON processed_commands")
    op.execute("DROP FUNCTION announce_spent_commands()")
