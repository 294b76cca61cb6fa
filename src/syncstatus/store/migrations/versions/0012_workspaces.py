"""Workspaces: a connection belongs to one, and its status records and commands carry it.

`connections.workspace_id` is the aggregate's (fixed by its first event); `connection_view`
keeps it for the list's filter and the workspaces' counts (indexed like the listed rows);
`status_history` and `commands` keep the workspace each record was made in, which the relays
publish (StatusChanged v3, ConnectionCommand v2). Every row stored before is in `default`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("connections", "connection_view", "status_history", "commands")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("workspace_id", sa.Text, nullable=False, server_default=sa.text("'default'")),
        )
    op.create_index(
        "connection_view_workspace",
        "connection_view",
        ["workspace_id", "created_at"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("connection_view_workspace", table_name="connection_view")
    for table in TABLES:
        op.drop_column(table, "workspace_id")
