"""The connections view, kept by the engine in the same transaction, and the commands."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from syncstatus.service.commands import CommandService, ConnectionNotFound
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound
from syncstatus.statemachine.commands import CommandRefused, CommandType
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import Account, EventType
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.queries import ConnectionQueries
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import event, happy_session

E = EventType


@pytest.fixture
def engine(db_engine) -> StatusEngine:
    return StatusEngine(PostgresStore(db_engine), Policy())


@pytest.fixture
def queries(db_engine) -> ConnectionQueries:
    return ConnectionQueries(db_engine)


@pytest.fixture
def commands(db_engine) -> CommandService:
    return CommandService(PostgresStore(db_engine), Policy())


def authorize(engine, connection_id="c1", credential="cred-1", app="facebook_ads"):
    started = event(E.AUTHORIZATION_STARTED, connection_id, app=app)
    succeeded = event(
        E.AUTHORIZATION_SUCCEEDED,
        connection_id,
        app=app,
        attributes={
            "business_account": "ads@acme.example",
            "business_account_id": "ba-42",
            "credential_id": credential,
        },
    )
    engine.apply_batch([Inbound(started), Inbound(succeeded)])


def accounts(engine, connection_id, *names):
    listed = tuple(Account(f"acc-{n}", n, "active") for n in names)
    engine.apply_event(event(E.ACCOUNTS_SYNCED, connection_id, accounts=listed))


def test_the_view_follows_authorization_accounts_and_syncs(engine, queries):
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1"))
    line = queries.list(scope=ALL).items[0]
    assert (line.credentials, line.account_status, line.can_extract) == (
        None,
        "Loading accounts",
        False,
    )
    authorize(engine)
    line = queries.list(scope=ALL).items[0]
    assert (line.data_source, line.business_account, line.business_account_id) == (
        "facebook_ads",
        "ads@acme.example",
        "ba-42",
    )
    assert (line.credentials, line.account_status, line.can_extract) == (
        "Active",
        "No accounts",
        False,
    )
    assert line.last_authorization is not None
    accounts(engine, "c1", "Main", "Brand")
    detail = queries.connection("c1", scope=ALL)
    assert detail.summary.account_status == "2 accounts" and detail.summary.can_extract
    assert [a.name for a in detail.accounts] == ["Brand", "Main"]
    accounts(engine, "c1", "Main")
    assert [a.name for a in queries.connection("c1", scope=ALL).accounts] == ["Main"]
    for e in happy_session("c1")[2:]:
        engine.apply_event(e)
    detail = queries.connection("c1", scope=ALL)
    assert detail.summary.status_name == "Synced" and detail.summary.last_sync is not None
    assert detail.accounts[0].updated == detail.summary.last_sync


def test_only_active_accounts_make_a_connection_extractable(engine, queries, commands):
    authorize(engine)
    disabled = (Account("acc-1", "Main", "disabled"),)
    engine.apply_event(event(E.ACCOUNTS_SYNCED, "c1", accounts=disabled))
    line = queries.list(scope=ALL).items[0]
    assert (line.account_status, line.active_accounts, line.can_extract) == ("1 account", 0, False)
    with pytest.raises(CommandRefused):
        commands.issue("c1", CommandType.SYNC_AND_REFRESH, "tests", scope=ALL)
    assert commands.schedule_due(datetime.now(UTC), timedelta(days=1), 10) == 1  # accounts only
    both = (*disabled, Account("acc-2", "Brand", "Active"))
    engine.apply_event(event(E.ACCOUNTS_SYNCED, "c1", accounts=both))
    line = queries.list(scope=ALL).items[0]
    assert (line.account_status, line.active_accounts, line.can_extract) == ("2 accounts", 1, True)


def test_account_status_sorts_loading_then_error_then_by_count(engine, queries):
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "loading"))
    authorize(engine, "failed")
    engine.apply_event(event(E.ACCOUNTS_SYNC_FAILED, "failed", error="API quota"))
    authorize(engine, "none")
    authorize(engine, "two")
    accounts(engine, "two", "Main", "Brand")
    authorize(engine, "one")
    accounts(engine, "one", "Main")
    ordered = [
        s.connection_id
        for s in queries.list(sort="account_status", descending=False, scope=ALL).items
    ]
    assert ordered == ["loading", "failed", "none", "one", "two"]


def test_new_credentials_become_main_and_old_ones_stay_secondary(engine, queries):
    authorize(engine, credential="old")
    authorize(engine, credential="new")
    roles = [(c.credential_id, c.role) for c in queries.connection("c1", scope=ALL).credentials]
    assert roles == [("new", "main"), ("old", "secondary")]


def test_a_failed_first_authorization_shows_error_with_its_detail(engine, queries):
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1"))
    engine.apply_event(event(E.AUTHORIZATION_FAILED, "c1", error="password expired"))
    line = queries.list(scope=ALL).items[0]
    assert (line.credentials, line.credentials_error) == ("Error", "password expired")


def test_a_failed_reauthorization_keeps_working_credentials_and_says_so(engine, queries):
    authorize(engine)
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1", "s-2"))
    failed = event(E.AUTHORIZATION_FAILED, "c1", "s-2", error="password expired")
    engine.apply_event(failed)
    line = queries.list(scope=ALL).items[0]
    assert (line.credentials, line.credentials_error) == ("Active", None)
    assert line.reauthorization_failed_at == failed.occurred_at
    assert line.reauthorization_error == "password expired"


def test_accounts_sync_failure_shows_error(engine, queries):
    authorize(engine)
    engine.apply_event(event(E.ACCOUNTS_SYNC_FAILED, "c1", error="API quota"))
    assert queries.list(scope=ALL).items[0].account_status == "Error"
    history = queries.history("c1", scope=ALL)
    assert [h.event_type for h in history if h.kind == "activity"] == ["ACCOUNTS_SYNC_FAILED"]


def test_search_sort_and_pages(engine, queries):
    for i, app in enumerate(["facebook_ads", "google_ads", "hubspot", "plaid"]):
        authorize(engine, f"c{i}", app=app)
    assert [c.data_source for c in queries.list(search="_ADS", scope=ALL).items] == [
        "google_ads",
        "facebook_ads",
    ]
    assert [c.data_source for c in queries.list(search="%", scope=ALL).items] == []
    ordered = queries.list(sort="data_source", descending=False, page=1, page_size=3, scope=ALL)
    assert [c.data_source for c in ordered.items] == ["facebook_ads", "google_ads", "hubspot"]
    assert ordered.total == 4
    assert [
        c.data_source
        for c in queries.list(
            sort="data_source", descending=False, page=2, page_size=3, scope=ALL
        ).items
    ] == ["plaid"]
    with pytest.raises(ValueError, match="cannot sort by 'status'"):
        queries.list(sort="status", scope=ALL)


def test_sync_is_refused_until_an_account_is_connected(engine, commands, db_engine):
    authorize(engine)
    with pytest.raises(CommandRefused, match="no account is connected"):
        commands.issue("c1", CommandType.SYNC_AND_REFRESH, "alice", scope=ALL)
    accounts(engine, "c1", "Main")
    issued = commands.issue("c1", CommandType.SYNC_AND_REFRESH, "alice", scope=ALL)
    assert issued.command is CommandType.SYNC_AND_REFRESH and issued.app == "facebook_ads"
    with db_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT command, requested_by FROM commands")).all() == [
            ("SYNC_AND_REFRESH", "alice")
        ]


def test_reconnect_is_always_allowed(engine, commands):
    authorize(engine)
    engine.apply_event(event(E.DEAUTHORIZED, "c1"))
    assert (
        commands.issue("c1", CommandType.RECONNECT, "alice", scope=ALL).command
        is CommandType.RECONNECT
    )
    with pytest.raises(CommandRefused, match="credentials are not valid"):
        commands.issue("c1", CommandType.SYNC_ACCOUNTS, "alice", scope=ALL)


def test_delete_closes_the_connection_for_good_and_keeps_its_history(
    engine, commands, queries, db_engine
):
    authorize(engine)
    parked = event(E.LOADING_COMPLETED, "c1")
    assert engine.apply_event(parked) is Outcome.PARKED
    deleted = commands.issue("c1", CommandType.DELETE, "alice", scope=ALL)
    assert queries.list(scope=ALL).total == 0 and queries.connection("c1", scope=ALL) is None
    history = queries.history("c1", scope=ALL)
    assert [(h.event_type, h.to_status, h.event_id) for h in history[2:]] == [
        ("CONNECTION_DELETED", Status.DISCONNECTED, str(deleted.command_id))
    ]
    with pytest.raises(ConnectionNotFound):
        commands.issue("c1", CommandType.RECONNECT, "alice", scope=ALL)
    assert engine.apply_event(event(E.DEAUTHORIZED, "c1")) is Outcome.REFUSED
    assert engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1", "s-2")) is Outcome.REFUSED
    assert len(queries.history("c1", scope=ALL)) == 3
    with db_engine.connect() as connection:
        reasons = connection.execute(
            sa.text("SELECT event_type, reason FROM dead_letters ORDER BY id")
        ).all()
    assert reasons == [
        ("LOADING_COMPLETED", "connection_deleted"),
        ("DEAUTHORIZED", "connection_deleted"),
        ("AUTHORIZATION_STARTED", "connection_deleted"),
    ]


def test_sync_frequency_is_validated(engine, commands, queries):
    authorize(engine)
    with pytest.raises(CommandRefused, match="15 to 10080 minutes"):
        commands.issue("c1", CommandType.SET_SYNC_FREQUENCY, "alice", 5, scope=ALL)
    commands.issue("c1", CommandType.SET_SYNC_FREQUENCY, "alice", 60, scope=ALL)
    assert queries.list(scope=ALL).items[0].sync_frequency_minutes == 60


def test_sessions_summarize_start_end_final_status_and_errors(engine, queries):
    session = happy_session("c1", "s-1")
    engine.apply_batch([Inbound(e) for e in session])  # recorded in one instant
    engine.apply_event(event(E.LOADING_STARTED, "c1", "s-2"))
    engine.apply_event(event(E.LOADING_FAILED, "c1", "s-2", error="timeout"))
    newest, oldest = queries.sessions("c1", scope=ALL)
    assert (oldest.session_id, oldest.final_status, oldest.errors) == ("s-1", 19, 0)
    assert (oldest.started_at, oldest.ended_at) == (session[0].occurred_at, session[-1].occurred_at)
    assert oldest.duration_s == (session[-1].occurred_at - session[0].occurred_at).total_seconds()
    assert oldest.duration_s > 10
    assert (newest.session_id, newest.final_status, newest.errors) == ("s-2", 11, 1)
    detail = queries.session("c1", "s-2", scope=ALL)
    assert [e.error for e in detail.entries] == [None, "timeout"]
    assert queries.session("c1", "nope", scope=ALL) is None


def test_two_schedulers_issue_each_due_sync_once(engine, commands, db_engine):
    for i in range(60):
        authorize(engine, f"c{i}")
        accounts(engine, f"c{i}", "Main")
    now = datetime.now(UTC) + timedelta(minutes=1)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def schedule():
        barrier.wait()
        counts.append(sum(iter(lambda: commands.schedule_due(now, timedelta(days=1), 7), 0)))

    threads = [threading.Thread(target=schedule) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db_engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT command, count(*), count(DISTINCT connection_id) FROM commands "
                "GROUP BY command ORDER BY command"
            )
        ).all()
    assert rows == [("SYNC_ACCOUNTS", 60, 60), ("SYNC_AND_REFRESH", 60, 60)]
    assert sum(counts) == 120
    assert commands.schedule_due(now, timedelta(days=1), 100) == 0


def next_sync_at(db_engine, connection_id="c1"):
    with db_engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT next_sync_at FROM connection_view WHERE connection_id = :c"),
            {"c": connection_id},
        ).scalar_one()


def test_a_running_sync_refuses_another_unless_forced_and_the_scheduler_waits(
    engine, commands, db_engine
):
    for cid in ("running", "idle"):
        authorize(engine, cid)
        accounts(engine, cid, "Main")
    engine.apply_event(event(E.LOADING_STARTED, "running"))
    with pytest.raises(CommandRefused, match="a sync is in progress \\(Loading\\)"):
        commands.issue("running", CommandType.SYNC_AND_REFRESH, "alice", scope=ALL)
    due = datetime.now(UTC) + timedelta(minutes=1)
    assert commands.schedule_due(due, timedelta(days=1), 10) == 3  # idle's sync, both accounts
    with db_engine.connect() as connection:
        synced = connection.execute(
            sa.text("SELECT connection_id FROM commands WHERE command = 'SYNC_AND_REFRESH'")
        ).scalars()
        assert list(synced) == ["idle"]
    forced = commands.issue("running", CommandType.SYNC_AND_REFRESH, "alice", force=True, scope=ALL)
    assert forced.command is CommandType.SYNC_AND_REFRESH


def test_a_manual_sync_pushes_the_scheduled_one_back_by_the_frequency(engine, commands, db_engine):
    authorize(engine)
    accounts(engine, "c1", "Main")
    assert next_sync_at(db_engine) is None
    issued = commands.issue("c1", CommandType.SYNC_AND_REFRESH, "alice", scope=ALL)
    assert next_sync_at(db_engine) == issued.requested_at + timedelta(minutes=24 * 60)
    assert commands.schedule_due(issued.requested_at, timedelta(days=1), 10) == 1  # accounts


def test_search_finds_the_data_source_as_people_write_it_and_the_business_account(db_engine):
    engine = StatusEngine(PostgresStore(db_engine), Policy())
    queries = ConnectionQueries(db_engine, {"hubspot": "HubSpot CRM"})
    for i, app in enumerate(["facebook_ads", "hubspot", "plaid"]):
        authorize(engine, f"c{i}", app=app)
    named = queries.list(search="facebook ads", scope=ALL).items
    assert [(c.data_source, c.data_source_name) for c in named] == [
        ("facebook_ads", "Facebook Ads")
    ]
    assert [c.data_source_name for c in queries.list(search="crm", scope=ALL).items] == [
        "HubSpot CRM"
    ]
    assert queries.list(search="acme.example", scope=ALL).total == 3
    assert queries.list(search="nothing like it", scope=ALL).total == 0
