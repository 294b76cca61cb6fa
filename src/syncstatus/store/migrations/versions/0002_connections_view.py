"""The connections view: credentials, accounts, activity, and the commands people issue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    _view()
    _children_and_commands()


def _view() -> None:
    """One row per connection, for people."""
    op.create_table(
        "connection_view",
        sa.Column("connection_id", sa.Text, primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("business_account", sa.Text),
        sa.Column("business_account_id", sa.Text),
        sa.Column("credentials_valid", sa.Boolean),
        sa.Column("credentials_error", sa.Text),
        sa.Column("accounts_state", sa.Text, nullable=False),
        sa.Column("accounts_error", sa.Text),
        sa.Column("account_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_authorized_at", _TS),
        sa.Column("last_synced_at", _TS),
        sa.Column(
            "sync_frequency_minutes", sa.Integer, nullable=False, server_default=sa.text("1440")
        ),
        sa.Column("next_sync_at", _TS),
        sa.Column("next_accounts_sync_at", _TS),
        sa.Column("deleted_at", _TS),
    )
    op.create_index("connection_view_app", "connection_view", ["app"])
    op.create_index(
        "connection_view_listed",
        "connection_view",
        ["created_at"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def _children_and_commands() -> None:
    """Accounts, credentials, activity and commands."""
    op.create_table(
        "accounts",
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS),
        sa.PrimaryKeyConstraint("connection_id", "account_id"),
    )
    op.create_table(
        "credentials",
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("credential_id", sa.Text, nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "credential_id"),
    )
    op.create_table(
        "connection_activity",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("detail", sa.Text),
    )
    op.create_index(
        "connection_activity_connection", "connection_activity", ["connection_id", "id"]
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("command_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("parameters", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", _TS),
    )
    op.create_index(
        "commands_unpublished", "commands", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index("commands_connection", "commands", ["connection_id", "id"])


def downgrade() -> None:
    for table in ("commands", "connection_activity", "credentials", "accounts", "connection_view"):
        op.drop_table(table)
