"""Dead-letter triage on real PostgreSQL, through the API and `syncstatus dead-letters`: every
filter, sorting and pages, one dead letter whole, the dry run (apply, park, refused again,
duplicate) changing nothing, the redrive recording who and when, and the producers'
scorecard. tests/integration/test_redrive_pipeline.py redrives through Kafka."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.cli.app import app
from syncstatus.schemas.messages import EventMessages
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound, Origin, RejectedMessage
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, SessionEvent
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import T0, event

E = EventType
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MESSAGES = EventMessages()
AUTH_TOPIC, PIPELINE_TOPIC = "syncstatus.auth", "syncstatus.pipeline"
MONTH_AGO = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def auth(kind: EventType, session: str, seconds: int) -> SessionEvent:
    return event(kind, "c1", session, at=at(seconds), producer="auth-service")


def message(e: SessionEvent, topic: str, offset: int) -> Origin:
    headers = (("trace-id", b"trace-%d" % offset), ("raw", b"\xff\x00"))
    return Origin(topic, 2, offset, e.connection_id.encode(), MESSAGES.encode(e), headers)


@pytest.fixture
def application(db_engine, database_url):
    application = build(Settings(database_url=database_url, api_token=TOKEN))
    yield application
    application.close()


@pytest.fixture
def client(application) -> TestClient:
    return TestClient(create_app(application), headers=AUTH)


@pytest.fixture
def letters(application, db_engine):
    """1: an illegal DEAUTHORIZED (Disconnected); 2: garbage on the pipeline topic; 3: a
    LOADING_COMPLETED of a connection never authorized, parked too long; 4: raised by the
    service itself (no message). Dead letter 2 was refused a month ago."""
    engine = application.engine
    for e in (
        auth(E.AUTHORIZATION_STARTED, "s1", 1),
        auth(E.AUTHORIZATION_SUCCEEDED, "s1", 2),
        auth(E.DISCONNECTED, "s1", 3),
    ):
        engine.apply_event(e, message(e, AUTH_TOPIC, 0))
    deauthorized = auth(E.DEAUTHORIZED, "revocation", 5)
    engine.apply_event(deauthorized, message(deauthorized, AUTH_TOPIC, 4))
    garbage = Origin(PIPELINE_TOPIC, 0, 9, b"c9", b"\x00not avro")
    engine.apply_batch([], [RejectedMessage("undecodable", "not Avro", garbage)])
    early = event(E.LOADING_COMPLETED, "c2", "s1", app="plaid", producer="pipeline-service")
    engine.apply_batch([Inbound(early, message(early, PIPELINE_TOPIC, 7))])
    engine.apply_event(event(E.LOADING_STARTED, "c3", app="plaid", producer="pipeline-service"))
    later = StatusEngine(
        PostgresStore(db_engine),
        engine.policy,
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    later.sweep()
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE dead_letters SET refused_at = :t WHERE id = 2"), {"t": MONTH_AGO}
        )
    return deauthorized


def ids(client: TestClient, **params: object) -> list[int]:
    response = client.get("/dead-letters", params={"sort": "id", "order": "asc", **params})
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["items"]]


def counts(db_engine) -> tuple[int, ...]:
    with db_engine.connect() as connection:
        return tuple(
            connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("processed_events", "status_history", "parked_events", "dead_letters")
        )


def test_every_filter_sort_and_page(client, letters):
    assert ids(client) == [1, 2, 3, 4]
    assert ids(client, connection_id="c1") == [1]
    assert ids(client, app="plaid") == [3, 4]
    assert ids(client, producer="pipeline-service") == [3, 4]
    assert ids(client, reason="parked_too_long") == [3, 4]
    assert ids(client, topic=PIPELINE_TOPIC) == [2, 3]
    assert ids(client, since="2026-11-15T00:00:00Z") == [1, 3, 4]
    assert ids(client, until="2026-11-15T00:00:00") == [2], "no zone: UTC"
    assert ids(client, reason="parked_too_long", topic=PIPELINE_TOPIC) == [3]
    assert ids(client, redriven=False) == [1, 2, 3, 4] and ids(client, redriven=True) == []
    newest_first = client.get("/dead-letters").json()
    assert newest_first["total"] == 4 and newest_first["items"][-1]["id"] == 2
    page = client.get("/dead-letters", params={"sort": "id", "page": 2, "page_size": 3}).json()
    assert ([d["id"] for d in page["items"]], page["total"], page["page"]) == ([1], 4, 2)
    by_producer = ids(client, sort="producer", order="desc")
    assert by_producer[-1] == 2, "never decoded: no producer, last"
    first = client.get("/dead-letters", params={"connection_id": "c1"}).json()["items"][0]
    assert first["from_status"] == {"code": 26, "name": "Disconnected"}
    assert (first["producer"], first["app"], first["topic"]) == (
        "auth-service",
        "facebook_ads",
        AUTH_TOPIC,
    )
    assert client.get("/dead-letters", params={"sort": "detail"}).status_code == 422
    assert client.get("/dead-letters", params={"reason": "a\x00b"}).status_code == 422


def test_one_dead_letter_whole(client, letters):
    shown = client.get("/dead-letters/1").json()
    assert (shown["reason"], shown["event_type"], shown["event_id"]) == (
        "illegal_transition",
        "DEAUTHORIZED",
        str(letters.event_id),
    )
    assert (shown["topic"], shown["partition"], shown["offset"]) == (AUTH_TOPIC, 2, 4)
    assert base64.b64decode(shown["value_base64"]) == MESSAGES.encode(letters)
    assert base64.b64decode(shown["key_base64"]) == b"c1"
    assert shown["headers"] == [
        {"name": "trace-id", "value": "trace-4", "value_base64": "dHJhY2UtNA=="},
        {"name": "raw", "value": None, "value_base64": "/wA="},
    ]
    assert shown["event"]["session_id"] == "revocation"
    assert shown["event"]["producer"] == "auth-service"
    assert shown["redrives"] == [] and shown["redrive_count"] == 0
    garbage = client.get("/dead-letters/2").json()
    assert (garbage["event"], garbage["event_id"], garbage["producer"]) == (None, None, None)
    assert client.get("/dead-letters/4").json()["value_base64"] is None
    assert client.get("/dead-letters/99").status_code == 404
    assert client.get("/dead-letters/1", headers={"Authorization": ""}).status_code == 401
    assert client.get("/dead-letters/1/original").content == MESSAGES.encode(letters)


def dry_run(client: TestClient, dead_letter_id: int) -> dict:
    response = client.post(f"/dead-letters/{dead_letter_id}/redrive", params={"dry_run": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dry_run"], body["requested"]) == (True, [])
    (verdict,) = body["verdicts"]
    return verdict


def test_the_dry_run_decides_with_the_machine_and_changes_nothing(
    application, client, db_engine, letters
):
    before = counts(db_engine)
    refused = dry_run(client, 1)
    assert (refused["outcome"], refused["reason"], refused["from_status"]["code"]) == (
        "refused",
        "illegal_transition",
        26,
    )
    assert dry_run(client, 2)["reason"] == "undecodable"
    parked = dry_run(client, 3)
    assert parked["outcome"] == "parked" and "60 s" in parked["detail"]
    assert counts(db_engine) == before, "a dry run keeps nothing"
    application.engine.apply_event(auth(E.AUTHORIZATION_STARTED, "s2", 4))
    before = counts(db_engine)
    applied = dry_run(client, 1)
    assert (applied["outcome"], applied["from_status"], applied["to_status"]) == (
        "applied",
        {"code": 6, "name": "Authorization"},
        {"code": 8, "name": "Deauthorized"},
    )
    assert counts(db_engine) == before
    application.triage.redrive([1], "tests", scope=ALL)
    redriven = message(letters, AUTH_TOPIC, 40).redriven(1, "tests")
    application.engine.apply_batch([Inbound(letters, redriven)])
    assert dry_run(client, 1)["outcome"] == "duplicate"
    assert client.post("/dead-letters/4/redrive", params={"dry_run": True}).status_code == 409
    assert client.post("/dead-letters/99/redrive", params={"dry_run": True}).status_code == 404


def test_a_redrive_is_queued_and_records_who_and_when(client, db_engine, letters):
    started = datetime.now(UTC)
    response = client.post("/dead-letters/1/redrive")
    assert response.status_code == 202, response.text
    assert response.json()["requested"] == [1]
    assert client.post("/dead-letters/1/redrive").status_code == 202, "again: harmless"
    shown = client.get("/dead-letters/1").json()
    assert shown["redrive_count"] == 2 and shown["redriven_by"]
    assert started <= datetime.fromisoformat(shown["redriven_at"]) <= datetime.now(UTC)
    assert [r["requested_by"] for r in shown["redrives"]] == [shown["redriven_by"]] * 2
    assert [r["published_at"] for r in shown["redrives"]] == [None, None], "no relay runs here"
    assert ids(client, redriven=True) == [1]
    refused = client.post("/dead-letters/4/redrive")
    assert refused.status_code == 409 and "no message" in refused.json()["detail"]
    assert client.post("/dead-letters/99/redrive").status_code == 404
    assert client.post("/dead-letters/1/redrive", headers={"Authorization": ""}).status_code == 401
    with db_engine.connect() as connection:
        queued = connection.execute(
            sa.text("SELECT dead_letter_id FROM redrives ORDER BY id")
        ).scalars()
        assert list(queued) == [1, 1]


def test_a_filtered_set_is_redriven_up_to_the_limit(client, letters):
    assert client.post("/dead-letters/redrive").status_code == 400, "no filter: refused"
    rehearsed = client.post(
        "/dead-letters/redrive", params={"app": "plaid", "dry_run": True}
    ).json()
    assert [v["outcome"] for v in rehearsed["verdicts"]] == ["parked"]
    assert [r["dead_letter_id"] for r in rehearsed["refused"]] == [4]
    done = client.post("/dead-letters/redrive", params={"redriven": False, "limit": 2})
    assert done.status_code == 202
    assert done.json()["requested"] == [1, 2]
    rest = client.post("/dead-letters/redrive", params={"redriven": False}).json()
    assert (rest["requested"], rest["refused"]) == (
        [3],
        [{"dead_letter_id": 4, "why": "it has no message: the service raised the event itself"}],
    )


def test_the_scorecard_counts_refusals_per_producer_and_reason(client, letters):
    card = client.get("/dead-letters/scorecard", params={"since": "2026-10-01T00:00:00Z"}).json()
    assert card["bucket"] == "hour"
    assert [(t["producer"], t["reason"], t["count"]) for t in card["totals"]] == [
        ("pipeline-service", "parked_too_long", 2),
        ("auth-service", "illegal_transition", 1),
        (None, "undecodable", 1),
    ]
    assert card["series"][0] == {
        "producer": None,
        "reason": "undecodable",
        "count": 1,
        "bucket": "2026-11-01T10:00:00Z",
    }
    daily = client.get(
        "/dead-letters/scorecard",
        params={"since": "2026-10-01", "bucket": "day", "producer": "auth-service"},
    ).json()
    assert [(s["reason"], s["count"]) for s in daily["series"]] == [("illegal_transition", 1)]
    recent = client.get("/dead-letters/scorecard").json()
    assert sum(t["count"] for t in recent["totals"]) == 3, "the last 24 hours by default"
    assert client.get("/dead-letters/scorecard", params={"bucket": "week"}).status_code == 422
    too_long = client.get("/dead-letters/scorecard", params={"since": "2000-01-01"})
    assert too_long.status_code == 400 and "buckets" in too_long.json()["detail"]


def cli(monkeypatch, database_url: str, *args: str) -> Result:
    """`syncstatus dead-letters ...` in this process, on this test's database."""
    monkeypatch.setenv("SYNCSTATUS_DATABASE_URL", database_url)
    return CliRunner().invoke(app, ["dead-letters", *args])


def test_the_command_line_lists_shows_and_redrives(monkeypatch, database_url, letters):
    listed = cli(monkeypatch, database_url, "list", "--reason", "parked_too_long", "--asc")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "refused", "at"]
    assert [line.split()[0] for line in lines[1:]] == ["3", "4"]
    assert "2 of 2 (page 1)" in listed.stderr
    shown = cli(monkeypatch, database_url, "show", "1")
    assert shown.exit_code == 0, shown.output
    assert "dead letter 1: illegal_transition" in shown.stdout
    assert f"origin:      {AUTH_TOPIC} [2] @ 4" in shown.stdout
    assert "header:      trace-id: b'trace-4'" in shown.stdout
    as_json = json.loads(cli(monkeypatch, database_url, "show", "1", "--json").stdout)
    assert (as_json["origin"]["topic"], as_json["event"]["type"]) == (AUTH_TOPIC, "DEAUTHORIZED")
    assert cli(monkeypatch, database_url, "show", "99").exit_code == 1
    rehearsed = cli(monkeypatch, database_url, "redrive", "1", "--dry-run")
    assert rehearsed.exit_code == 0, rehearsed.output
    assert rehearsed.stdout.startswith("#1 would be refused again: illegal_transition: ")
    parked = cli(monkeypatch, database_url, "redrive", "--app", "plaid", "--dry-run")
    assert parked.stdout.splitlines() == [
        "#3 would park: it would wait up to 60 s for its predecessors",
        "#4 cannot be redriven: it has no message: the service raised the event itself",
    ]
    assert parked.exit_code == 1
    done = cli(monkeypatch, database_url, "redrive", "1", "--by", "ops")
    assert (done.exit_code, done.stdout) == (0, "#1 queued for redrive by ops\n")
    assert "redrive:     by ops at " in cli(monkeypatch, database_url, "show", "1").stdout
    listed = cli(monkeypatch, database_url, "list", "--redriven")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["1"]
    assert cli(monkeypatch, database_url, "redrive").exit_code == 2, "no id, no filter"
