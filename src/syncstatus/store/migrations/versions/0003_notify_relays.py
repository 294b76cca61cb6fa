"""Wake the relays: a transaction that inserts into a relayed table notifies on commit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RELAYED = ("outbox", "dead_letters", "commands")


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION syncstatus_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('syncstatus_' || TG_TABLE_NAME, ''); RETURN NULL; END $$"
    )
    for table in RELAYED:
        op.execute(
            f"CREATE TRIGGER {table}_notify_relay AFTER INSERT ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION syncstatus_notify_relay()"
        )


def downgrade() -> None:
    for table in RELAYED:
        op.execute(f"DROP TRIGGER {table}_notify_relay ON {table}")
    op.execute("DROP FUNCTION syncstatus_notify_relay()")
