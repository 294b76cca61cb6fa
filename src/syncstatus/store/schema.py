"""The tables, as SQLAlchemy Core metadata. Alembic migrations create them; a test checks that
the migrations and this metadata agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

RUN_PARTS = ("source_sync", "data_refresh")
"""The parts of a session a connection card shows a status of, as column prefixes."""


def workspace_column() -> Column:
    """The workspace a connection belongs to, on its rows and on its records (migration 0012);
    rows stored before workspaces are in `default`."""
    return Column("workspace_id", Text, nullable=False, server_default=text("'default'"))


FEED_XID_DEFAULT = (
    "greatest(pg_current_xact_id()::text::bigint, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1)"
)
"""status_history.feed_xid: the greater of the row's transaction id and the newest one
completed when it was written (store/changes.py says why)."""

connections = Table(
    "connections",
    metadata,
    Column("connection_id", Text, primary_key=True),
    Column("app", Text, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("version", Integer, nullable=False, comment="sequence number of the last transition"),
    Column("session_id", Text, nullable=False),
    Column("status_changed_at", DateTime(timezone=True), nullable=False),
    Column("completed_substages", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("timed_out_from", SmallInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("session_opened_at", DateTime(timezone=True)),
    Column("session_opened_by", Text),
    Column("holds_credentials", Boolean),
    Column("deleted_at", DateTime(timezone=True)),
    Column(
        "producer_marks",
        JSONB,
        nullable=False,
        server_default=text("'[]'"),
        comment="[producer, of status changes, occurred_at, event type, substage] of the "
        "latest applied event of each producer",
    ),
    workspace_column(),
    Index("connections_status_since", "status", "status_changed_at"),
)

connection_sessions = Table(
    "connection_sessions",
    metadata,
    Column("connection_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", Text, nullable=False),
    Column("sequence", Integer, comment="first transition; null: judged older, never current"),
    PrimaryKeyConstraint("connection_id", "session_id"),
)

status_history = Table(
    "status_history",
    metadata,
    Column("connection_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("app", Text, nullable=False),
    Column("from_status", SmallInteger),
    Column("to_status", SmallInteger, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("producer", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("error", Text),
    Column("substage", Text),
    Column("failure_class", Text),
    Column("failure_retryable", Boolean),
    Column("failure_code", Text),
    workspace_column(),
    Column(
        "feed_xid",
        BigInteger,
        nullable=False,
        server_default=text(FEED_XID_DEFAULT),
        comment="position in commit order, with feed_id (store/changes.py)",
    ),
    Column("feed_id", BigInteger, Identity(), nullable=False),
    PrimaryKeyConstraint("connection_id", "sequence"),
    Index("status_history_session", "connection_id", "session_id"),
    Index("status_history_feed", "feed_xid", "feed_id"),
    Index("status_history_workspace_feed", "workspace_id", "feed_xid", "feed_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("connection_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Index("outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    Index("outbox_published_at", "published_at"),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("processed_events_processed_at", "processed_at"),
)

parked_events = Table(
    "parked_events",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("connection_id", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("event", JSONB, nullable=False),
    Column("origin", JSONB),
    Column("arrival", BigInteger, Identity(), nullable=False),
    Index("parked_events_connection", "connection_id"),
    Index("parked_events_parked_at", "parked_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("event_id", Uuid),
    Column("connection_id", Text),
    Column("event_type", Text),
    Column("from_status", SmallInteger),
    Column("event", JSONB, comment="the decoded event, when it could be decoded"),
    Column("origin", JSONB, comment="topic, partition, offset, key and value of the message"),
    Column("refused_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Column("producer", Text, comment="the decoded event's producer, for triage and scorecards"),
    Column("app", Text),
    Column("redriven_at", DateTime(timezone=True), comment="when a redrive was last asked for"),
    Column("redriven_by", Text),
    Column("redrive_count", Integer, nullable=False, server_default=text("0")),
    Index("dead_letters_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    Index("dead_letters_connection", "connection_id"),
    Index("dead_letters_refused_at", "refused_at"),
)

redrives = Table(
    "redrives",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dead_letter_id", BigInteger, ForeignKey("dead_letters.id"), nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Index("redrives_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    Index("redrives_dead_letter", "dead_letter_id"),
)

connection_view = Table(
    "connection_view",
    metadata,
    Column("connection_id", Text, primary_key=True),
    Column("app", Text, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("business_account", Text),
    Column("business_account_id", Text),
    Column("credentials_valid", Boolean),
    Column("credentials_error", Text),
    Column("accounts_state", Text, nullable=False),
    Column("accounts_error", Text),
    Column("account_count", Integer, nullable=False, server_default=text("0")),
    Column("active_account_count", Integer, nullable=False, server_default=text("0")),
    Column("last_authorized_at", DateTime(timezone=True)),
    Column("last_synced_at", DateTime(timezone=True)),
    Column("reauthorization_failed_at", DateTime(timezone=True)),
    Column("reauthorization_error", Text),
    Column("sync_frequency_minutes", Integer, nullable=False, server_default=text("1440")),
    Column("next_sync_at", DateTime(timezone=True)),
    Column("next_accounts_sync_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    Column("can_extract", Boolean, nullable=False, server_default=text("false")),
    Column("can_sync_accounts", Boolean, nullable=False, server_default=text("false")),
    Column("sync_in_progress", Boolean, nullable=False, server_default=text("false")),
    Column("status_error", Text),
    *(
        column
        for part in RUN_PARTS
        for column in (
            Column(f"{part}_state", Text),
            Column(f"{part}_started_at", DateTime(timezone=True)),
            Column(f"{part}_succeeded_at", DateTime(timezone=True)),
            Column(f"{part}_failed_at", DateTime(timezone=True)),
            Column(f"{part}_error", Text),
        )
    ),
    Column("status_failure_class", Text),
    workspace_column(),
    Index("connection_view_app", "app"),
    Index("connection_view_listed", "created_at", postgresql_where=text("deleted_at IS NULL")),
    Index(
        "connection_view_workspace",
        "workspace_id",
        "created_at",
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

accounts = Table(
    "accounts",
    metadata,
    Column("connection_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("connection_id", "account_id"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("connection_id", Text, nullable=False),
    Column("credential_id", Text, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("connection_id", "credential_id"),
)

connection_activity = Table(
    "connection_activity",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("connection_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("error", Text),
    Column("detail", Text),
    Index("connection_activity_connection", "connection_id", "id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("command_id", Uuid, nullable=False, unique=True),
    Column("connection_id", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("parameters", JSONB, nullable=False, server_default=text("'{}'")),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    workspace_column(),
    Index("commands_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    Index("commands_connection", "connection_id", "id"),
    Index(
        "commands_scheduled_published",
        "published_at",
        postgresql_where=text("requested_by = 'scheduler'"),
    ),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text),
    Column("workspace_id", Text, comment="only this workspace's records; null: all"),
    Column("apps", ARRAY(Text), comment="only these apps' records; null: all"),
    Column("statuses", ARRAY(SmallInteger), comment="only records to these statuses"),
    Column("errors_only", Boolean, nullable=False, server_default=text("false")),
    Column("secret", Text, nullable=False, comment="whsec_..., signs every delivery"),
    Column("state", Text, nullable=False, server_default=text("'active'")),
    Column("paused_at", DateTime(timezone=True)),
    Column("pause_reason", Text),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

webhook_positions = Table(
    "webhook_positions",
    metadata,
    Column(
        "subscription_id",
        Uuid,
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("feed_xid", BigInteger, nullable=False),
    Column("feed_id", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("failing_since", DateTime(timezone=True)),
    Column("retry_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
)

webhook_redeliveries = Table(
    "webhook_redeliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "subscription_id",
        Uuid,
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("connection_id", Text),
    Column("next_sequence", Integer),
    Column("last_sequence", Integer),
    Column("rewind_xid", BigInteger),
    Column("rewind_id", BigInteger),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("done_at", DateTime(timezone=True)),
    Index(
        "webhook_redeliveries_pending",
        "subscription_id",
        "id",
        postgresql_where=text("done_at IS NULL"),
    ),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "subscription_id",
        Uuid,
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message_id", Text, nullable=False),
    Column("connection_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("status_code", SmallInteger),
    Column("seconds", Float, nullable=False),
    Column("error", Text),
    Column("redelivery", Boolean, nullable=False, server_default=text("false")),
    Index("webhook_deliveries_log", "subscription_id", "id"),
    Index("webhook_deliveries_attempted_at", "attempted_at"),
)
