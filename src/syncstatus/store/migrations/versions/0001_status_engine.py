"""The status engine: connections, history, outbox, idempotency keys, parked events, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    _connections_and_history()
    _delivery_and_refusals()


def _connections_and_history() -> None:
    """The aggregate and its history."""
    op.create_table(
        "connections",
        sa.Column("connection_id", sa.Text, primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column(
            "version", sa.Integer, nullable=False, comment="sequence number of the last transition"
        ),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("last_occurred_at", _TS, nullable=False),
        sa.Column("status_changed_at", _TS, nullable=False),
        sa.Column(
            "completed_substages",
            postgresql.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("timed_out_from", sa.SmallInteger),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("connections_status_since", "connections", ["status", "status_changed_at"])

    op.create_table(
        "status_history",
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("from_status", sa.SmallInteger),
        sa.Column("to_status", sa.SmallInteger, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("producer", sa.Text, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("substage", sa.Text),
        sa.PrimaryKeyConstraint("connection_id", "sequence"),
    )
    op.create_index("status_history_session", "status_history", ["connection_id", "session_id"])


def _delivery_and_refusals() -> None:
    """The outbox, idempotency keys, parked events and dead letters."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", _TS),
    )
    op.create_index(
        "outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index("outbox_published_at", "outbox", ["published_at"])

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("processed_at", _TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("processed_events_processed_at", "processed_events", ["processed_at"])

    op.create_table(
        "parked_events",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("connection_id", sa.Text, nullable=False),
        sa.Column("parked_at", _TS, nullable=False),
        sa.Column("event", postgresql.JSONB, nullable=False),
        sa.Column("origin", postgresql.JSONB),
    )
    op.create_index("parked_events_connection", "parked_events", ["connection_id"])
    op.create_index("parked_events_parked_at", "parked_events", ["parked_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("event_id", sa.Uuid),
        sa.Column("connection_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("from_status", sa.SmallInteger),
        sa.Column("event", postgresql.JSONB, comment="the decoded event, when it could be decoded"),
        sa.Column(
            "origin",
            postgresql.JSONB,
            comment="topic, partition, offset, key and value of the message",
        ),
        sa.Column("refused_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", _TS),
    )
    op.create_index(
        "dead_letters_unpublished",
        "dead_letters",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index("dead_letters_connection", "dead_letters", ["connection_id"])


def downgrade() -> None:
    for table in (
        "dead_letters",
        "parked_events",
        "processed_events",
        "outbox",
        "status_history",
        "connections",
    ):
        op.drop_table(table)
