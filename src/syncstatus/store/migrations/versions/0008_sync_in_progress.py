"""The view keeps whether a sync runs, by the domain's rule, so the scheduler never asks for a
second one beside it.

Existing rows are filled with the statuses the rule names at this revision (a stage after
authorization, not ended: 2, 12, 13, 15, 16, 18, 21, 25); from here on the projection writes it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "connection_view",
        sa.Column("sync_in_progress", sa.Boolean, nullable=False, server_default=sa.text("false")),
    )
    op.execute(
        "UPDATE connection_view SET sync_in_progress = "
        "status IN (2, 12, 13, 15, 16, 18, 21, 25) AND deleted_at IS NULL"
    )


def downgrade() -> None:
    op.drop_column("connection_view", "sync_in_progress")
