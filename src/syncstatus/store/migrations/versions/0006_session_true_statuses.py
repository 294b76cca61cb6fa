"""Session-true statuses: the sessions a connection knew, each producer's latest event, the
credentials the guards read, deletion, and the order parked events arrived in.

Existing rows are filled from the history they already have: a connection's current session
opened with its first transition in that session, each producer's mark is its latest applied
event, and the credentials and deletion come from the connections view.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connection_sessions",
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("opened_by", sa.Text, nullable=False),
        sa.Column(
            "sequence", sa.Integer, comment="first transition; null: judged older, never current"
        ),
        sa.PrimaryKeyConstraint("connection_id", "session_id"),
    )
    op.execute(
        "INSERT INTO connection_sessions (connection_id, session_id, opened_at, opened_by, "
        "sequence) SELECT DISTINCT ON (connection_id, session_id) connection_id, session_id, "
        "occurred_at, producer, sequence FROM status_history "
        "ORDER BY connection_id, session_id, sequence"
    )
    op.add_column("connections", sa.Column("session_opened_at", _TS))
    op.add_column("connections", sa.Column("session_opened_by", sa.Text))
    op.add_column("connections", sa.Column("holds_credentials", sa.Boolean))
    op.add_column("connections", sa.Column("deleted_at", _TS))
    op.add_column(
        "connections",
        sa.Column(
            "producer_marks",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'"),
            comment="[producer, of status changes, occurred_at, event type, substage] of the "
            "latest applied event of each producer",
        ),
    )
    op.execute(
        "UPDATE connections c SET session_opened_at = s.opened_at, session_opened_by = s.opened_by "
        "FROM connection_sessions s "
        "WHERE s.connection_id = c.connection_id AND s.session_id = c.session_id"
    )
    op.execute(
        "UPDATE connections c SET holds_credentials = v.credentials_valid, "
        "deleted_at = v.deleted_at FROM connection_view v WHERE v.connection_id = c.connection_id"
    )
    op.execute(
        "UPDATE connections c SET producer_marks = m.marks FROM (SELECT connection_id, "
        "jsonb_agg(jsonb_build_array(producer, true, occurred_at, event_type, substage)) AS marks "
        "FROM (SELECT DISTINCT ON (connection_id, producer) connection_id, producer, "
        "occurred_at, event_type, substage FROM status_history "
        "ORDER BY connection_id, producer, occurred_at DESC, sequence DESC) latest "
        "GROUP BY connection_id) m WHERE m.connection_id = c.connection_id"
    )
    op.drop_column("connections", "last_occurred_at")
    op.add_column("connection_view", sa.Column("reauthorization_failed_at", _TS))
    op.add_column("connection_view", sa.Column("reauthorization_error", sa.Text))
    op.add_column(
        "parked_events",
        sa.Column("arrival", sa.BigInteger, sa.Identity(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("parked_events", "arrival")
    op.drop_column("connection_view", "reauthorization_error")
    op.drop_column("connection_view", "reauthorization_failed_at")
    op.add_column("connections", sa.Column("last_occurred_at", _TS))
    op.execute(
        "UPDATE connections c SET last_occurred_at = h.latest FROM (SELECT connection_id, "
        "max(occurred_at) AS latest FROM status_history GROUP BY connection_id) h "
        "WHERE h.connection_id = c.connection_id"
    )
    op.alter_column("connections", "last_occurred_at", nullable=False)
    for column in (
        "producer_marks",
        "deleted_at",
        "holds_credentials",
        "session_opened_by",
        "session_opened_at",
    ):
        op.drop_column("connections", column)
    op.drop_table("connection_sessions")
