"""The view keeps the two statuses of a connection card (the source data sync and the plan
data refresh: outcome, last started, succeeded, failed and its error) and the error of the
current status.

Existing rows are left null: the run states are a fold over each connection's history by the
domain's rules, which SQL would have to restate. A connection shows its statuses from its next
transition on (its next sync), as the card's "no run yet" until then.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PARTS = ("source_sync", "data_refresh")
_RUN_COLUMNS = (
    ("state", sa.Text),
    ("started_at", sa.DateTime(timezone=True)),
    ("succeeded_at", sa.DateTime(timezone=True)),
    ("failed_at", sa.DateTime(timezone=True)),
    ("error", sa.Text),
)


def upgrade() -> None:
    op.add_column("connection_view", sa.Column("status_error", sa.Text))
    for part in _PARTS:
        for name, kind in _RUN_COLUMNS:
            op.add_column("connection_view", sa.Column(f"{part}_{name}", kind))


def downgrade() -> None:
    for part in _PARTS:
        for name, _ in _RUN_COLUMNS:
            op.drop_column("connection_view", f"{part}_{name}")
    op.drop_column("connection_view", "status_error")
