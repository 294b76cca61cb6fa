"""Defects an attacker or a careless producer found (issue 11), each on real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from kafka.consumer.fetcher import ConsumerRecord

from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.engine import StatusEngine
from syncstatus.messages import EventLimits, EventMessages, MessageRejected
from syncstatus.statemachine.connection import Policy, RefusalReason
from syncstatus.statemachine.events import EventFamily, EventType
from syncstatus.store.database import create_engine
from syncstatus.store.outbox import OutboxStore
from syncstatus.store.postgres import PostgresStore
from syncstatus.store.queries import StatusQueries

from ..unit.factories import event

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


@pytest.fixture
def west_of_utc(db_engine, database_url) -> sa.Engine:
    """The database's own time zone is New York's, as a default install's may be."""
    name = sa.make_url(database_url).database
    with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'"))
    db_engine.dispose()
    return create_engine(database_url)


def test_a_year_one_timestamp_is_refused_as_an_invalid_event():
    message = EventMessages().encode(event(EventType.AUTHORIZATION_STARTED, at=YEAR_ONE))
    with pytest.raises(MessageRejected) as refused:
        EventMessages(EventLimits()).decode(message)
    assert refused.value.reason is RefusalReason.INVALID_EVENT
    assert "before" in refused.value.detail


def test_sessions_run_in_utc_so_extreme_timestamps_read_back(west_of_utc):
    """What the limit would let through must still never crash a reader: .NET's
    DateTime.MinValue, written past the limit straight into the engine."""
    with west_of_utc.connect() as connection:
        assert connection.execute(sa.text("SHOW timezone")).scalar_one() == "UTC"
    engine = StatusEngine(PostgresStore(west_of_utc), Policy())
    engine.apply_event(event(EventType.AUTHORIZATION_STARTED, "year-one", at=YEAR_ONE))
    (row,) = StatusQueries(west_of_utc).history("year-one")
    assert row.occurred_at == YEAR_ONE
    with OutboxStore(west_of_utc).status_changes(10) as batch:
        assert [t.occurred_at for _, t in batch.items] == [YEAR_ONE]


def record(value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.auth",
        partition=0,
        leader_epoch=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"c1",
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=len(value),
        serialized_header_size=0,
    )


def test_a_lock_timeout_is_waited_out_never_dead_lettered(db_engine, database_url):
    """PostgreSQL's lock_timeout raises psycopg's own error through the hot path, unwrapped by
    SQLAlchemy; it is an outage to retry, not an event to refuse as unprocessable."""
    impatient = sa.create_engine(
        database_url, connect_args={"options": "-c timezone=UTC -c lock_timeout=100ms"}
    )
    consumer = EventConsumer(
        lambda: None,
        StatusEngine(PostgresStore(impatient), Policy()),
        {"t.auth": EventFamily.AUTHORIZATION},
        EventMessages(),
        100,
    )
    started = EventMessages().encode(event(EventType.AUTHORIZATION_STARTED, "c1"))
    holder = db_engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(hashtextextended('c1', 0))"))
    stop = threading.Event()
    releaser = threading.Timer(
        4.0, lambda: holder.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    )
    releaser.start()
    try:
        assert consumer._apply_until_done([record(started)], stop)
    finally:
        releaser.join()
        holder.close()
        impatient.dispose()
    with db_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar() == 0
        assert connection.execute(sa.text("SELECT status FROM connections")).scalar() == 6
