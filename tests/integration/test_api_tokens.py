"""Named tokens and roles on the real API and PostgreSQL: who may read, command and delete,
and the name of the token recorded on the command, in the history and on the commands topic."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config
from syncstatus.schemas.messages import CommandMessages
from syncstatus.settings import Settings
from syncstatus.tokens import token_digest
from tests.integration.test_api import seed

from .support import running_service, settings_for

LEGACY = "t0ken"
READ, OPERATE, ADMIN = "rita-s3cret", "otto-s3cret", "ada-s3cret"
NAMED = ",".join(
    [
        f"rita:read:{token_digest(READ)}",
        f"otto:operate:{token_digest(OPERATE)}",
        f"ada:admin:{token_digest(ADMIN)}",
    ]
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


READS = [
    "/connections",
    "/connections/c1",
    "/connections/c1/history",
    "/connections/c1/sessions",
    "/connections/c1/sessions/s-1",
    "/connections/c1/explain",
    "/statuses",
]
COMMANDS = [
    ("post", "/connections/c1/sync"),
    ("post", "/connections/c1/sync-accounts"),
    ("post", "/connections/c1/reconnect"),
    ("put", "/connections/c1/sync-frequency"),
]
DELETE = ("delete", "/connections/c1")


def served(database_url: str, **settings: object):
    application = build(
        Settings(database_url=database_url, api_token=LEGACY, api_tokens=NAMED, **settings)
    )
    seed(application)
    return application, TestClient(create_app(application))


@pytest.fixture
def private(db_engine, database_url):
    application, client = served(database_url)
    yield application, client
    application.close()


@pytest.fixture
def public(db_engine, database_url):
    application, client = served(database_url, api_public_reads=True)
    yield application, client
    application.close()


def requested_by(application) -> list[tuple[str, str]]:
    with application.database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text("SELECT command, requested_by FROM commands ORDER BY id")
            )
        ]


def test_private_reads_need_a_valid_token_of_any_role(private):
    _, client = private
    for path in READS:
        missing = client.get(path)
        assert missing.status_code == 401, path
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert missing.json() == {"detail": "a bearer token is required"}
        assert client.get(path, headers={"Authorization": "Basic cml0YTp4"}).status_code == 401
        wrong = client.get(path, headers=bearer("nope"))
        assert (wrong.status_code, wrong.json()) == (
            403,
            {"detail": "the bearer token is not valid"},
        )
        for token in (READ, OPERATE, ADMIN, LEGACY):
            assert client.get(path, headers=bearer(token)).status_code == 200, (path, token)
    assert client.head("/connections").status_code == 401


def test_public_reads_need_no_token_but_a_wrong_one_is_still_refused(public):
    _, client = public
    for path in READS:
        assert client.get(path).status_code == 200, path
        assert client.get(path, headers=bearer(READ)).status_code == 200, path
        assert client.get(path, headers=bearer("nope")).status_code == 403, path


def test_the_dashboard_and_the_api_description_are_public_even_with_private_reads(
    db_engine, database_url
):
    application, client = served(database_url, api_docs=True)
    try:
        for path in ("/", "/static/app.js", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path
        reads = client.get("/openapi.json").json()["paths"]["/connections"]["get"]
        assert reads["security"] == [{"HTTPBearer": []}]
        assert {"401", "403"} <= set(reads["responses"])
    finally:
        application.close()


def test_the_guard_covers_every_read_even_routes_it_does_not_know(private, public):
    """The dead letters' routes (and any added later) need a token like every read."""
    for _, client in (private, public):
        original = "/dead-letters/1/original"
        assert client.get(original).status_code == 401
        assert client.get(original, headers=bearer("nope")).status_code == 403
        assert client.get(original, headers=bearer(OPERATE)).status_code == 404
    _, client = private
    assert client.get("/dead-letters").status_code == 401
    assert client.get("/no-such-route").status_code == 401
    assert client.get("/no-such-route", headers=bearer(READ)).status_code == 404


def test_a_read_token_may_issue_no_command(private):
    application, client = private
    for method, path in [*COMMANDS, DELETE]:
        refused = client.request(method, path, json={"minutes": 60}, headers=bearer(READ))
        assert refused.status_code == 403, path
        assert refused.json() == {
            "detail": "the bearer token's role (read) does not allow this; it needs "
            + ("admin" if method == "delete" else "operate")
        }
        for token, status in (("nope", 403), (None, 401)):
            headers = bearer(token) if token else {}
            assert (
                client.request(method, path, json={"minutes": 60}, headers=headers).status_code
                == status
            )
    assert requested_by(application) == []


def test_an_operate_token_may_command_but_not_delete(private):
    application, client = private
    for method, path in COMMANDS:
        accepted = client.request(method, path, json={"minutes": 60}, headers=bearer(OPERATE))
        assert accepted.status_code == 202, (path, accepted.text)
        assert accepted.json()["requested_by"] == "otto"
    refused = client.delete("/connections/c1", headers=bearer(OPERATE))
    assert refused.status_code == 403
    assert "it needs admin" in refused.json()["detail"]
    assert client.get("/connections/c1", headers=bearer(OPERATE)).status_code == 200
    assert requested_by(application) == [
        ("SYNC_AND_REFRESH", "otto"),
        ("SYNC_ACCOUNTS", "otto"),
        ("RECONNECT", "otto"),
        ("SET_SYNC_FREQUENCY", "otto"),
    ]


def test_an_admin_token_may_delete_and_the_history_says_who_did_what(private):
    application, client = private
    assert client.post("/connections/c1/reconnect", headers=bearer(OPERATE)).status_code == 202
    assert client.post("/connections/c1/sync", headers=bearer(ADMIN)).status_code == 202
    deleted = client.delete("/connections/c1", headers=bearer(ADMIN))
    assert (deleted.status_code, deleted.json()["requested_by"]) == (202, "ada")
    assert requested_by(application) == [
        ("RECONNECT", "otto"),
        ("SYNC_AND_REFRESH", "ada"),
        ("DELETE", "ada"),
    ]
    history = client.get("/connections/c1/history", headers=bearer(READ)).json()
    assert [(c["command"], c["requested_by"]) for c in history["commands"]] == [
        ("RECONNECT", "otto"),
        ("SYNC_AND_REFRESH", "ada"),
        ("DELETE", "ada"),
    ]
    assert history["commands"][-1]["command_id"] == deleted.json()["command_id"]
    last = history["entries"][-1]
    assert (last["event_type"], last["to_status"]["code"], last["requested_by"]) == (
        "CONNECTION_DELETED",
        26,
        "ada",
    )
    assert {e["requested_by"] for e in history["entries"][:-1]} == {None}
    session = client.get("/connections/c1/sessions/s-1", headers=bearer(READ)).json()
    assert session["entries"][-1]["requested_by"] == "ada"


def test_the_history_leaves_out_the_schedulers_commands(private):
    application, client = private
    later = application.commands.clock() + timedelta(days=365)
    assert application.commands.schedule_due(later, timedelta(days=1), limit=10) > 0
    assert {who for _, who in requested_by(application)} == {"scheduler"}
    history = client.get("/connections/c1/history", headers=bearer(READ)).json()
    assert history["commands"] == []


def test_the_legacy_token_is_an_admin_named_default(private):
    application, client = private
    assert client.post("/connections/c1/sync", headers=bearer(LEGACY)).status_code == 202
    assert client.delete("/connections/c1", headers=bearer(LEGACY)).status_code == 202
    assert requested_by(application) == [("SYNC_AND_REFRESH", "default"), ("DELETE", "default")]


def test_the_legacy_token_alone_still_works(db_engine, database_url):
    application = build(Settings(database_url=database_url, api_token=LEGACY))
    seed(application)
    client = TestClient(create_app(application))
    try:
        assert client.get("/connections").status_code == 401
        assert client.get("/connections", headers=bearer(LEGACY)).status_code == 200
        assert client.delete("/connections/c1", headers=bearer(LEGACY)).status_code == 202
        assert requested_by(application) == [("DELETE", "default")]
    finally:
        application.close()


def test_without_any_token_configured_every_api_route_is_refused(db_engine, database_url):
    application = build(Settings(database_url=database_url))
    client = TestClient(create_app(application))
    try:
        assert client.get("/connections", headers=bearer(LEGACY)).status_code == 403
        assert client.post("/connections/c1/sync", headers=bearer(LEGACY)).status_code == 403
        assert client.get("/").status_code == 200
    finally:
        application.close()


def test_the_commands_topic_carries_the_token_name(kafka, db_engine, database_url):
    settings = settings_for(
        kafka,
        database_url,
        api_tokens=NAMED,
        api_token=LEGACY,
        topic_commands=f"t{uuid.uuid4().hex[:8]}.commands",
    )
    application = build(settings)
    seed(application)
    client = TestClient(create_app(application))
    issued = {
        "otto": client.post("/connections/c1/reconnect", headers=bearer(OPERATE)).json(),
        "ada": client.delete("/connections/c1", headers=bearer(ADMIN)).json(),
    }
    messages = CommandMessages()
    seen: list[dict] = []
    with running_service(settings):
        reader = TopicReader(
            client_config(settings), [settings.topic_commands], from_beginning=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {c["type"] for c in seen} != {"RECONNECT", "DELETE"}:
            seen += [messages.decode(r.value) for r in reader.poll(200)]
        reader.close()
    application.close()
    by_id = {str(c["command_id"]): c for c in seen}
    assert by_id[issued["otto"]["command_id"]]["requested_by"] == "otto"
    assert by_id[issued["ada"]["command_id"]]["requested_by"] == "ada"
    assert by_id[issued["ada"]["command_id"]]["type"] == "DELETE"
