"""The view keeps what the domain says a connection can do (extract, list its accounts), so
the scheduler selects by the domain's rules instead of restating them in SQL.

Existing rows are filled with the rules as they stand at this revision; from here on the
projection writes both columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("can_extract", "can_sync_accounts"):
        op.add_column(
            "connection_view",
            sa.Column(name, sa.Boolean, nullable=False, server_default=sa.text("false")),
        )
    op.execute(
        "UPDATE connection_view SET "
        "can_extract = coalesce(credentials_valid, false) AND active_account_count > 0 "
        "AND deleted_at IS NULL, "
        "can_sync_accounts = coalesce(credentials_valid, false) AND deleted_at IS NULL"
    )


def downgrade() -> None:
    op.drop_column("connection_view", "can_sync_accounts")
    op.drop_column("connection_view", "can_extract")
