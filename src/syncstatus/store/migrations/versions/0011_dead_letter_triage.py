"""Dead-letter triage: each dead letter keeps its event's producer and app (filled from the
stored event for the rows before), who last asked for its redrive and when, and how often;
`redrives` is the outbox the redrive relay publishes from, woken like the other relays.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "dead_letters",
        sa.Column(
            "producer", sa.Text, comment="the decoded event's producer, for triage and scorecards"
        ),
    )
    op.add_column("dead_letters", sa.Column("app", sa.Text))
    op.add_column(
        "dead_letters",
        sa.Column(
            "redriven_at", sa.DateTime(timezone=True), comment="when a redrive was last asked for"
        ),
    )
    op.add_column("dead_letters", sa.Column("redriven_by", sa.Text))
    op.add_column(
        "dead_letters",
        sa.Column("redrive_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.execute(
        "UPDATE dead_letters SET producer = event->>'producer', app = event->>'app' "
        "WHERE event IS NOT NULL"
    )
    op.create_index("dead_letters_refused_at", "dead_letters", ["refused_at"])
    op.create_table(
        "redrives",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "dead_letter_id", sa.BigInteger, sa.ForeignKey("dead_letters.id"), nullable=False
        ),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column(
            "requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "redrives_unpublished", "redrives", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index("redrives_dead_letter", "redrives", ["dead_letter_id"])
    op.execute(
        "CREATE TRIGGER redrives_notify_relay AFTER INSERT ON redrives "
        "FOR EACH STATEMENT EXECUTE FUNCTION syncstatus_notify_relay()"
    )


def downgrade() -> None:
    op.drop_table("redrives")
    op.drop_index("dead_letters_refused_at", table_name="dead_letters")
    for name in ("redrive_count", "redriven_by", "redriven_at", "app", "producer"):
        op.drop_column("dead_letters", name)
