"""Count active accounts apart: only they make a connection extractable.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "connection_view",
        sa.Column("active_account_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.execute(
        "UPDATE connection_view v SET active_account_count = (SELECT count(*) FROM accounts a "
        "WHERE a.connection_id = v.connection_id "
        "AND lower(regexp_replace(a.status, '^\\s+|\\s+$', '', 'g')) = 'active')"
    )


def downgrade() -> None:
    op.drop_column("connection_view", "active_account_count")
