"""The two card statuses (seed 004) and the error reasons, kept by the engine on real PostgreSQL
and served by the read queries and the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.service.engine import StatusEngine
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Policy
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.runs import RunOutcome
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
def client(database_url):
    application = build(
        Settings(database_url=database_url, api_token="t0ken", api_public_reads=True)
    )
    yield TestClient(create_app(application))
    application.close()


def until(kind, connection_id):
    events = happy_session(connection_id)
    return events[: [e.type for e in events].index(kind) + 1]


def drive(engine, events):
    for e in events:
        engine.apply_event(e)
    return events


def test_a_synced_connection_shows_both_parts_succeeded(engine, queries, client):
    events = drive(engine, happy_session("c-ok"))
    started = {e.type: e.occurred_at for e in events}
    line = queries.list(scope=ALL).items[0]
    assert (line.source_sync.state, line.data_refresh.state) == (
        RunOutcome.SUCCESS,
        RunOutcome.SUCCESS,
    )
    assert line.source_sync.started_at == started[E.LOADING_STARTED]
    assert line.source_sync.succeeded_at == started[E.PROCESSING_STARTED]
    assert line.data_refresh.started_at == started[E.PROCESSING_STARTED]
    assert line.data_refresh.succeeded_at == started[E.SYNC_COMPLETED]
    assert line.status_error is None

    summary = client.get("/connections/c-ok").json()["summary"]
    assert summary["source_sync"]["state"] == "success"
    assert summary["data_refresh"] == {
        "state": "success",
        "started_at": summary["data_refresh"]["started_at"],
        "succeeded_at": summary["data_refresh"]["succeeded_at"],
        "failed_at": None,
        "error": None,
    }
    assert summary["data_refresh"]["succeeded_at"] is not None


def test_errors_show_on_the_part_they_belong_to_with_their_reason(
    engine, db_engine, queries, client
):
    drive(engine, until(E.LOADING_STARTED, "c-load"))
    engine.apply_event(event(E.LOADING_FAILED, "c-load", error="API quota exceeded"))
    drive(engine, until(E.PROCESSING_STARTED, "c-proc"))
    engine.apply_event(event(E.ACCOUNTS_SYNC_FAILED, "c-proc", error="Token lacks ads_read"))
    later = datetime.now(UTC) + timedelta(days=1)
    StatusEngine(PostgresStore(db_engine), Policy(), clock=lambda: later).sweep()

    loading = queries.connection("c-load", scope=ALL).summary
    assert (loading.source_sync.state, loading.source_sync.error) == (
        RunOutcome.ERROR,
        "API quota exceeded",
    )
    assert loading.status_error == "API quota exceeded"
    assert loading.data_refresh.state is None

    processing = queries.connection("c-proc", scope=ALL).summary
    assert processing.status_code == 23
    assert processing.source_sync.state is RunOutcome.SUCCESS
    assert processing.data_refresh.state is RunOutcome.ERROR
    assert processing.data_refresh.error == processing.status_error
    assert "unchanged" in processing.status_error
    assert processing.accounts_error == "Token lacks ads_read"

    items = client.get("/connections", params={"sort": "data_refresh"}).json()["items"]
    assert [i["connection_id"] for i in items] == ["c-proc", "c-load"], "nulls last"
    by_id = {i["connection_id"]: i for i in items}
    assert by_id["c-load"]["source_sync"]["state"] == "error"
    assert by_id["c-load"]["status_error"] == "API quota exceeded"
    assert by_id["c-proc"]["data_refresh"]["state"] == "error"
    assert by_id["c-proc"]["accounts_error"] == "Token lacks ads_read"
    by_sync = client.get("/connections", params={"sort": "source_sync", "order": "asc"})
    assert [i["connection_id"] for i in by_sync.json()["items"]] == ["c-load", "c-proc"]


def test_a_new_session_restarts_the_sync_and_keeps_the_last_refresh(engine, queries):
    drive(engine, happy_session("c-again"))
    before = queries.connection("c-again", scope=ALL).summary
    restarted = event(E.LOADING_STARTED, "c-again", "s-2")
    engine.apply_event(restarted)
    after = queries.connection("c-again", scope=ALL).summary
    assert after.source_sync.state is RunOutcome.IN_PROGRESS
    assert after.source_sync.started_at == restarted.occurred_at
    assert after.source_sync.succeeded_at == before.source_sync.succeeded_at
    assert after.data_refresh == before.data_refresh
