"""`GET /connections/{id}/explain` and `syncstatus explain` on real PostgreSQL: connections
stopped at 6, 2, 16 (four substages), 23 and 25, with a parked and a refused event."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.cli.app import app as cli
from syncstatus.service.engine import StatusEngine
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, Substage
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.statuses import Status
from syncstatus.store.explain import ExplainQueries
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import T0, event

E = EventType
POLICY = Policy(
    park_window=timedelta(seconds=60),
    authorization_timeout=timedelta(minutes=15),
    stage_timeout=timedelta(hours=6),
)
STUCK_AT = T0 + timedelta(hours=8)
"""When everything but the timed-out connection was driven; explained 30 s later."""
AUTHORIZED = [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED]
TO_PROCESSING = [*AUTHORIZED, E.LOADING_STARTED, E.LOADING_COMPLETED, E.STRUCTURING_STARTED]
TO_PROCESSING += [E.STRUCTURING_COMPLETED, E.PROCESSING_STARTED]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def producer_of(kind: EventType) -> str:
    return f"{kind.family.value}-svc"


def drive(engine: StatusEngine, connection_id: str, kinds: list[EventType]) -> None:
    for kind in kinds:
        engine.apply_event(event(kind, connection_id, producer=producer_of(kind)))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def application(db_engine, database_url, clock):
    """The built application, explaining at the test's clock, with the connections driven."""
    application = build(Settings(database_url=database_url, api_public_reads=True))
    application.explain = ExplainQueries(db_engine, POLICY, clock)
    engine = StatusEngine(PostgresStore(db_engine), POLICY, clock)
    drive(engine, "c23", AUTHORIZED)
    clock.now = T0 + timedelta(hours=7)
    engine.sweep()
    clock.now = STUCK_AT
    drive(engine, "c6", [E.AUTHORIZATION_STARTED])
    drive(engine, "c2", [*AUTHORIZED, E.LOADING_STARTED])
    drive(engine, "c2", [E.STRUCTURING_STARTED])  # parked: a later stage arriving early
    drive(engine, "c2", [E.AUTHORIZATION_SUCCEEDED])  # refused: past authorization
    drive(engine, "c16", TO_PROCESSING)
    for substage in list(Substage)[:4]:
        engine.apply_event(
            event(E.PROCESSING_SUBSTAGE_COMPLETED, "c16", substage=substage, producer="pipe-2")
        )
    drive(engine, "c25", [*AUTHORIZED, E.WEBHOOK_PENDING])
    clock.now = STUCK_AT + timedelta(seconds=30)
    yield application
    application.close()


@pytest.fixture
def client(application) -> TestClient:
    return TestClient(create_app(application))


def explained(client: TestClient, connection_id: str) -> dict:
    response = client.get(f"/connections/{connection_id}/explain")
    assert response.status_code == 200, response.text
    return response.json()


def moves(body: dict) -> dict[str, int]:
    """The session's own events; the connection-wide ones and a new authorization are always
    there (see test_every_status_lists_the_connection_wide_events)."""
    return {
        w["event_type"]: w["target"]["code"]
        for w in body["waiting_for"]
        if not w["connection_wide"] and w["event_type"] != "AUTHORIZATION_STARTED"
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_authorization_waits_for_the_auth_topic_until_the_authorization_timeout(client):
    body = explained(client, "c6")
    assert body["status"]["code"] == 6 and at(body["since"]) == STUCK_AT
    assert moves(body) == {
        "AUTHORIZATION_SUCCEEDED": 9,
        "AUTHORIZATION_FAILED": 7,
        "AUTHORIZATION_TIMED_OUT": 20,
    }
    assert {(w["topic"], w["last_producer"]) for w in body["waiting_for"]} == {
        (Settings().topic_auth, "authorization-svc")
    }
    assert body["deadline"]["event_type"] == "AUTHORIZATION_TIMED_OUT"
    assert at(body["deadline"]["at"]) == STUCK_AT + POLICY.authorization_timeout
    assert body["deadline"]["remaining_s"] == 15 * 60 - 30
    assert (body["parked"], body["refusals"], body["can_extract"]) == ([], [], False)
    assert "no credentials yet: the connection was never authorized" in body["why_not"]


def test_loading_shows_its_parked_and_refused_events(client):
    body = explained(client, "c2")
    assert body["status"]["code"] == 2
    assert moves(body) == {"LOADING_COMPLETED": 12, "LOADING_FAILED": 11}
    loading = next(w for w in body["waiting_for"] if w["event_type"] == "LOADING_COMPLETED")
    assert (loading["topic"], loading["last_producer"]) == (
        Settings().topic_pipeline,
        "pipeline-svc",
    )
    assert at(body["deadline"]["at"]) == STUCK_AT + POLICY.stage_timeout
    (parked,) = body["parked"]
    assert (parked["event_type"], parked["session_id"]) == ("STRUCTURING_STARTED", "s-1")
    assert (at(parked["parked_at"]), parked["age_s"], parked["window_left_s"]) == (
        STUCK_AT,
        30,
        30,
    )
    (refusal,) = body["refusals"]
    assert (refusal["reason"], refusal["event_type"]) == (
        "illegal_transition",
        "AUTHORIZATION_SUCCEEDED",
    )
    assert refusal["detail"] == "AUTHORIZATION_SUCCEEDED is not allowed from 2 Loading"
    assert body["why_not"] == ["no active account (No accounts)"]


def test_processing_with_four_substages_waits_for_the_fifth(client):
    body = explained(client, "c16")
    assert body["status"]["code"] == 16
    assert moves(body) == {"PROCESSING_SUBSTAGE_COMPLETED": 16, "PROCESSING_FAILED": 17}
    assert body["substages_left"] == ["HISTORICAL_DATA_CLEANING"]
    assert [(b["event_type"], b["guard"], b["for_good"]) for b in body["blocked"]] == [
        ("PROCESSING_COMPLETED", "all_substages_completed", False)
    ]
    pipeline = {w["last_producer"] for w in body["waiting_for"] if w["family"] == "pipeline"}
    assert pipeline == {"pipe-2"}, "the producer of the latest pipeline transition"
    assert body["deadline"]["event_type"] == "STAGE_TIMED_OUT"


def test_timed_out_by_the_sweeper_resumes_loading_and_has_no_deadline(client):
    body = explained(client, "c23")
    assert body["status"]["code"] == 23
    assert at(body["since"]) == T0 + timedelta(hours=7)
    assert moves(body) == {"LOADING_STARTED": 2, "WEBHOOK_PENDING": 25}
    assert body["deadline"] is None
    assert ("STRUCTURING_STARTED", "resumes_structuring") in {
        (b["event_type"], b["guard"]) for b in body["blocked"]
    }


def test_waiting_for_webhook_names_the_webhook_topic_that_sent_nothing_yet(client):
    body = explained(client, "c25")
    assert body["status"]["code"] == 25
    assert moves(body) == {"WEBHOOK_RECEIVED": 2, "WEBHOOK_FAILED": 11}
    received = next(w for w in body["waiting_for"] if w["event_type"] == "WEBHOOK_RECEIVED")
    assert (received["topic"], received["last_producer"]) == (Settings().topic_webhooks, None)
    assert at(body["deadline"]["at"]) == STUCK_AT + POLICY.stage_timeout


def test_every_status_lists_the_connection_wide_events(client):
    for connection_id in ("c6", "c2", "c16", "c23", "c25"):
        wide = {w["event_type"] for w in explained(client, connection_id)["waiting_for"]} - set(
            moves(explained(client, connection_id))
        )
        assert wide == {"AUTHORIZATION_STARTED", "DEAUTHORIZED", "DISCONNECTED"}


def test_an_unknown_connection_is_404(client):
    assert client.get("/connections/nope/explain").status_code == 404


def test_the_cli_prints_the_explanation(application, database_url):
    runner = CliRunner()
    env = {"SYNCSTATUS_DATABASE_URL": database_url}
    result = runner.invoke(cli, ["explain", "c2"], env=env)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"c2: {int(Status.LOADING)} Loading since {STUCK_AT:%Y-%m-%d %H:%M:%S} UTC" in text
    assert f"LOADING_COMPLETED -> 12 Loaded  on {Settings().topic_pipeline}" in text
    assert "(last producer: pipeline-svc)" in text
    assert "deadline: STAGE_TIMED_OUT at" in text
    assert "STRUCTURING_STARTED (session s-1) parked" in text
    assert "illegal_transition  AUTHORIZATION_SUCCEEDED:" in text
    assert "extraction: not possible\n  no active account (No accounts)" in text
    assert runner.invoke(cli, ["explain", "nope"], env=env).exit_code == 1
