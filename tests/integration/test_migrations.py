"""Alembic migrations and the SQLAlchemy metadata describe the same schema."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncstatus.schemas.changes import BEGINNING, ChangeFilter
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import ConnectionView, can_extract
from syncstatus.store.changes import ChangeQueries
from syncstatus.store.database import alembic_config, create_engine, migrate
from syncstatus.store.schema import metadata


def test_migrations_match_the_metadata(db_engine):
    with db_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(db_engine):
    migrate(db_engine)
    with db_engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(str(db_engine.url))).get_current_head()
    assert current == head == "0013"


def test_0007_fills_the_scheduler_rules_of_existing_views_as_the_domain_states_them(database_url):
    engine = create_engine(database_url)
    migrate(engine, "0006")
    rows = {
        "valid-active": (True, 1, None),
        "valid-no-accounts": (True, 0, None),
        "invalid-active": (False, 1, None),
        "unknown": (None, 1, None),
        "deleted": (True, 1, datetime(2026, 1, 1, tzinfo=UTC)),
    }
    with engine.begin() as connection:
        for cid, (valid, active, deleted_at) in rows.items():
            connection.execute(
                sa.text(
                    "INSERT INTO connection_view (connection_id, app, status, created_at, "
                    "credentials_valid, accounts_state, active_account_count, deleted_at) "
                    "VALUES (:c, 'app', 19, now(), :v, 'ready', :a, :d)"
                ),
                {"c": cid, "v": valid, "a": active, "d": deleted_at},
            )
    migrate(engine)
    with engine.connect() as connection:
        found = {
            cid: (extract, accounts)
            for cid, extract, accounts in connection.execute(
                sa.text("SELECT connection_id, can_extract, can_sync_accounts FROM connection_view")
            )
        }
    engine.dispose()
    for cid, (valid, active, deleted_at) in rows.items():
        view = ConnectionView(cid, "app", Status.SYNCED, datetime.now(UTC), credentials_valid=valid)
        view.deleted_at = deleted_at
        assert found[cid] == (
            can_extract(valid, active, deleted_at),
            view.can_sync_accounts,
        ), cid


def test_0008_fills_sync_in_progress_of_existing_views_as_the_domain_states_it(database_url):
    engine = create_engine(database_url)
    migrate(engine, "0007")
    with engine.begin() as connection:
        for status in Status:
            connection.execute(
                sa.text(
                    "INSERT INTO connection_view (connection_id, app, status, created_at, "
                    "accounts_state) VALUES (:c, 'app', :s, now(), 'ready')"
                ),
                {"c": f"c{int(status)}", "s": int(status)},
            )
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT status, sync_in_progress FROM connection_view"))
        found = {status: syncing for status, syncing in rows}
    engine.dispose()
    assert found == {int(status): status.syncing for status in Status}


def test_0011_fills_the_producer_and_app_of_existing_dead_letters_from_their_event(database_url):
    engine = create_engine(database_url)
    migrate(engine, "0010")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO dead_letters (reason, detail, event) VALUES "
                "('stale', 'd', CAST(:e AS jsonb)), ('undecodable', 'd', NULL)"
            ),
            {"e": '{"producer": "auth-service", "app": "plaid"}'},
        )
    migrate(engine)
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT producer, app, redrive_count FROM dead_letters ORDER BY id")
        ).all()
    engine.dispose()
    assert found == [("auth-service", "plaid", 0), (None, None, 0)]


def test_0012_puts_every_connection_and_record_stored_before_in_the_default_workspace(
    database_url,
):
    engine = create_engine(database_url)
    migrate(engine, "0011")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO connections (connection_id, app, status, version, session_id, "
                "status_changed_at) VALUES ('old', 'app', 9, 1, 's', now())"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO connection_view (connection_id, app, status, created_at, "
                "accounts_state) VALUES ('old', 'app', 9, now(), 'ready')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO status_history (connection_id, sequence, session_id, app, "
                "to_status, event_id, event_type, producer, occurred_at, recorded_at) VALUES "
                "('old', 1, 's', 'app', 9, gen_random_uuid(), 'AUTHORIZATION_STARTED', 'p', "
                "now(), now())"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO commands (command_id, connection_id, command, requested_by) "
                "VALUES (gen_random_uuid(), 'old', 'RECONNECT', 'alice')"
            )
        )
    migrate(engine, "0012")
    with engine.connect() as connection:
        found = {
            table: connection.execute(sa.text(f"SELECT workspace_id FROM {table}")).scalars().all()
            for table in ("connections", "connection_view", "status_history", "commands")
        }
    engine.dispose()
    assert found == {table: ["default"] for table in found}


def test_0013_places_every_record_stored_before_in_the_feed_in_sequence_order(database_url):
    """Rows recorded before the feed all become final at once, each connection's in sequence
    order even where its clock went back; the feed's ids continue after them."""
    engine = create_engine(database_url)
    migrate(engine, "0012")
    now = datetime.now(UTC)
    rows = [("b", 1, 0), ("a", 1, 5), ("a", 2, 3), ("b", 2, 9), ("a", 3, 4)]  # seconds
    with engine.begin() as connection:
        for cid, sequence, seconds in rows:
            connection.execute(
                sa.text(
                    "INSERT INTO status_history (connection_id, sequence, session_id, app, "
                    "to_status, event_id, event_type, producer, occurred_at, recorded_at) "
                    "VALUES (:c, :s, 's', 'app', 9, gen_random_uuid(), 'AUTHORIZATION_STARTED', "
                    "'p', :at, :at)"
                ),
                {"c": cid, "s": sequence, "at": now + timedelta(seconds=seconds)},
            )
    migrate(engine)
    page = ChangeQueries(engine).after(BEGINNING, ChangeFilter(), 100, scope=None)
    order = [(c.transition.connection_id, c.transition.sequence) for c in page.changes]
    assert order == [("b", 1), ("a", 1), ("a", 2), ("a", 3), ("b", 2)]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO status_history (connection_id, sequence, session_id, app, "
                "to_status, event_id, event_type, producer, occurred_at, recorded_at) "
                "VALUES ('a', 4, 's', 'app', 9, gen_random_uuid(), 'AUTHORIZATION_STARTED', "
                "'p', now(), now())"
            )
        )
    after = ChangeQueries(engine).after(page.scanned_to, ChangeFilter(), 100, scope=None)
    assert [(c.transition.connection_id, c.transition.sequence) for c in after.changes] == [
        ("a", 4)
    ]
    assert after.changes[0].position.id == 6
    engine.dispose()
