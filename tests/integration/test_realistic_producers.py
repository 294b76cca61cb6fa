"""The realistic producers of the unit property test, a few hundred connections at once,
through Kafka and PostgreSQL: the status topic and the connections view end where the oracle
says, and no status record of a left session follows one of a newer session."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import sqlalchemy as sa

from syncstatus.statemachine.statuses import Status
from tests.helpers.oracle import expected
from tests.helpers.producers import story

from .support import OutputReader, gapless, publisher_for, running_service, settings_for

CONNECTIONS = 250
TOLERANCE = timedelta(minutes=5)
DEDUP = frozenset({"plaid"})


def wait_until_consumed(database_url: str, event_ids: set, timeout_s: float = 60) -> None:
    """Every published event id claimed: applied, parked, refused or found a duplicate."""
    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                claimed = connection.execute(sa.text("SELECT count(*) FROM processed_events"))
                if claimed.scalar_one() == len(event_ids):
                    return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"not all of {len(event_ids)} events were consumed in {timeout_s} s")


def test_realistic_producers_through_kafka_and_postgres_end_where_the_oracle_says(
    kafka, database_url
):
    settings = settings_for(
        kafka,
        database_url,
        clock_skew_s=TOLERANCE.total_seconds(),
        deduplication_apps=set(DEDUP),
        park_window_s=600,
    )
    stories = [
        story(random.Random(seed), f"real-{seed}", TOLERANCE, DEDUP) for seed in range(CONNECTIONS)
    ]
    reader, publisher = OutputReader(settings), publisher_for(settings)
    published: set = set()
    with running_service(settings):
        for phase in range(max(len(s.phases) for s in stories)):
            for told in stories:
                for event in told.phases[phase] if phase < len(told.phases) else ():
                    publisher.publish(event)
                    published.add(event.event_id)
            publisher.flush()
            wait_until_consumed(database_url, published)
        versions = _versions(database_url)
        seen = reader.wait_for(
            lambda seen: all(
                {c["sequence"] for c in seen.changes[cid]} == set(range(1, version + 1))
                for cid, version in versions.items()
            ),
            60,
        )
    publisher.close()
    reader.close()
    expected_last = {s.connection_id: expected(s.truth, DEDUP) for s in stories}
    assert set(versions) == set(expected_last)
    for told in stories:
        changes = sorted(seen.changes[told.connection_id], key=lambda c: c["sequence"])
        want = expected_last[told.connection_id]
        assert gapless(seen.changes[told.connection_id]), told.connection_id
        assert (changes[-1]["to_code"], changes[-1]["session_id"]) == (
            int(want.status),
            want.session_id,
        ), told.connection_id
        order = [told.sessions.index(c["session_id"]) for c in changes]
        assert order == sorted(order), told.connection_id
    _assert_views(database_url, expected_last)


def _versions(database_url: str) -> dict[str, int]:
    """Each connection's stored version: the status records it must have published."""
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT connection_id, version FROM connections"))
        versions = dict(rows.all())
    engine.dispose()
    return versions


def _assert_views(database_url: str, want: dict) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        views = {
            row.connection_id: row
            for row in connection.execute(
                sa.text(
                    "SELECT connection_id, status, credentials_valid, last_authorized_at, "
                    "last_synced_at, reauthorization_failed_at, accounts_state FROM connection_view"
                )
            )
        }
        accounts: dict[str, dict] = {}
        for row in connection.execute(
            sa.text(
                "SELECT connection_id, account_id, name, status, created_at, updated_at "
                "FROM accounts"
            )
        ):
            accounts.setdefault(row.connection_id, {})[row.account_id] = tuple(row[2:])
    engine.dispose()
    for connection_id, expect in want.items():
        view = views[connection_id]
        assert Status(view.status) is expect.status, connection_id
        assert (
            view.credentials_valid,
            view.last_authorized_at,
            view.last_synced_at,
            view.reauthorization_failed_at,
            view.accounts_state,
        ) == (
            expect.credentials_valid,
            expect.last_authorized_at,
            expect.last_synced_at,
            expect.reauthorization_failed_at,
            expect.accounts_state,
        ), connection_id
        assert accounts.get(connection_id, {}) == expect.accounts, connection_id
