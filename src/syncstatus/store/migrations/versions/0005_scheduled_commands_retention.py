"""Find the scheduler's published commands quickly: retention prunes them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "commands_scheduled_published",
        "commands",
        ["published_at"],
        postgresql_where=text("requested_by = 'scheduler'"),
    )


def downgrade() -> None:
    op.drop_index("commands_scheduled_published", table_name="commands")
