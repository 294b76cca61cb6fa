"""Status history keeps the failure that caused a transition (class, retryable, the source's
code), so the status record can say what kind of failure it was; the view keeps the class of
the failure behind its current error status.

Existing rows stay null: they were written before producers could say (read as unknown when
they carry error text).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("status_history", sa.Column("failure_class", sa.Text))
    op.add_column("status_history", sa.Column("failure_retryable", sa.Boolean))
    op.add_column("status_history", sa.Column("failure_code", sa.Text))
    op.add_column("connection_view", sa.Column("status_failure_class", sa.Text))


def downgrade() -> None:
    op.drop_column("connection_view", "status_failure_class")
    for name in ("failure_code", "failure_retryable", "failure_class"):
        op.drop_column("status_history", name)
