"""The HTTP API against real PostgreSQL: reads, commands, tokens, and no 500 on any input."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.schemas.messages import EventMessages, MessageRejected
from syncstatus.settings import Settings
from syncstatus.statemachine.events import Account, EventType
from tests.helpers.factories import event, happy_session

E = EventType
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def application(db_engine, database_url):
    # Public reads: these tests read without a token; tests/integration/test_api_tokens.py
    # covers private reads and the roles.
    application = build(Settings(database_url=database_url, api_token=TOKEN, api_public_reads=True))
    yield application
    application.close()


@pytest.fixture
def client(application) -> TestClient:
    return TestClient(create_app(application))


def seed(application, connection_id="c1", app="facebook_ads", accounts=("Main",)):
    engine = application.engine
    engine.apply_event(event(E.AUTHORIZATION_STARTED, connection_id, app=app))
    engine.apply_event(
        event(
            E.AUTHORIZATION_SUCCEEDED,
            connection_id,
            app=app,
            attributes={
                "business_account": f"{app}@acme.example",
                "business_account_id": f"ba-{connection_id}",
                "credential_id": "cred-1",
            },
        )
    )
    if accounts:
        engine.apply_event(
            event(
                E.ACCOUNTS_SYNCED,
                connection_id,
                app=app,
                accounts=tuple(Account(f"acc-{n}", n, "active") for n in accounts),
            )
        )


def test_list_search_sort_and_page(application, client):
    for i, app in enumerate(["hubspot", "facebook_ads", "google_ads"]):
        seed(application, f"c{i}", app)
    page = client.get("/connections", params={"sort": "data_source", "order": "asc"}).json()
    assert [c["data_source"] for c in page["items"]] == ["facebook_ads", "google_ads", "hubspot"]
    assert page["total"] == 3
    first = page["items"][0]
    assert first["status"] == {
        "code": 9,
        "name": "Authorized",
        "stage": "authorization",
        "is_error": False,
    }
    assert (first["credentials"], first["account_status"], first["can_extract"]) == (
        "Active",
        "1 account",
        True,
    )
    found = client.get("/connections", params={"search": "ads", "page_size": 1, "page": 2})
    assert [c["data_source"] for c in found.json()["items"]] == ["facebook_ads"]
    refused = client.get("/connections", params={"sort": "status"})
    assert refused.status_code == 422 and "sort" in refused.text


def test_connection_detail_history_and_sessions(application, client):
    seed(application)
    for e in happy_session("c1", "s-2")[2:]:
        application.engine.apply_event(e)
    detail = client.get("/connections/c1").json()
    assert detail["summary"]["status"]["name"] == "Synced"
    assert detail["accounts"][0]["name"] == "Main"
    assert detail["credentials"] == [
        {"credential_id": "cred-1", "role": "main", "added": detail["credentials"][0]["added"]}
    ]
    entries = client.get("/connections/c1/history").json()["entries"]
    assert entries[0]["from_status"] is None and entries[0]["to_status"]["code"] == 6
    assert {e["kind"] for e in entries} == {"status_change", "activity"}
    sessions = client.get("/connections/c1/sessions").json()["sessions"]
    assert sessions[0]["session_id"] == "s-2" and sessions[0]["final_status"]["code"] == 19
    one = client.get("/connections/c1/sessions/s-2").json()
    assert one["summary"]["ended_at"] is not None
    assert client.get("/connections/c1/sessions/nope").status_code == 404
    assert client.get("/connections/nope").json() == {"detail": "no connection nope"}


def test_statuses_are_generated_from_the_machine(client):
    body = client.get("/statuses").json()
    assert [s["code"] for s in body["statuses"]][:3] == [2, 6, 7]
    assert {"event_type": "SYNC_COMPLETED", "sources": [18], "target": 19, "guard": ""} in (
        body["transitions"]
    )


def test_write_endpoints_refuse_a_missing_or_wrong_token(application, client):
    seed(application)
    for method, path in [
        ("post", "/connections/c1/sync"),
        ("post", "/connections/c1/reconnect"),
        ("post", "/connections/c1/sync-accounts"),
        ("delete", "/connections/c1"),
        ("put", "/connections/c1/sync-frequency"),
    ]:
        missing = client.request(method, path, json={"minutes": 60})
        wrong = client.request(
            method, path, json={"minutes": 60}, headers={"Authorization": "Bearer nope"}
        )
        assert (missing.status_code, wrong.status_code) == (401, 403), path
    assert client.get("/connections/c1").status_code == 200


def test_a_token_the_server_cannot_compare_as_text_is_refused_not_a_500(application, client):
    seed(application)
    latin1 = client.post("/connections/c1/sync", headers={"Authorization": b"Bearer t\xf6ken"})
    assert latin1.status_code == 403


WRITES = [
    ("post", "/connections/c1/sync"),
    ("post", "/connections/c1/reconnect"),
    ("post", "/connections/c1/sync-accounts"),
    ("delete", "/connections/c1"),
    ("put", "/connections/c1/sync-frequency"),
]


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    write=st.sampled_from(WRITES),
    scheme=st.sampled_from([b"Bearer ", b"bearer ", b"Basic ", b""]),
    token=st.binary(max_size=64).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
def test_no_forged_authorization_header_gets_in(client, write, scheme, token):
    method, path = write
    header = (scheme + token).strip() or b"Bearer"
    response = client.request(method, path, json={"minutes": 60}, headers={"Authorization": header})
    assert response.status_code in (401, 403), (header, response.status_code, response.text)


def test_ids_up_to_the_configured_length_are_served_and_longer_ones_are_422(application, client):
    longest = "c" * application.settings.max_id_length
    seed(application, longest)
    assert client.get(f"/connections/{longest}").status_code == 200
    assert client.get(f"/connections/{longest}/history").status_code == 200
    assert client.get(f"/connections/{longest}x").status_code == 422


def test_history_and_sessions_of_an_unknown_connection_are_404(client):
    assert client.get("/connections/nobody/history").status_code == 404
    assert client.get("/connections/nobody/sessions").status_code == 404


def test_sync_is_refused_with_the_reason_unless_the_connection_can_extract(application, client):
    seed(application, accounts=())
    refused = client.post("/connections/c1/sync", headers=AUTH)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "no account is connected: sync accounts first"}
    accepted = client.post("/connections/c1/sync-accounts", headers=AUTH)
    assert accepted.status_code == 202 and accepted.json()["command"] == "SYNC_ACCOUNTS"


def test_delete_is_final_and_keeps_history(application, client):
    seed(application)
    assert client.delete("/connections/c1", headers=AUTH).status_code == 202
    assert client.get("/connections").json()["total"] == 0
    assert client.get("/connections/c1").status_code == 404
    assert client.delete("/connections/c1", headers=AUTH).status_code == 404
    entries = client.get("/connections/c1/history").json()["entries"]
    assert len(entries) == 4
    assert (entries[-1]["event_type"], entries[-1]["to_status"]["code"]) == (
        "CONNECTION_DELETED",
        26,
    )


def test_sync_frequency_is_validated(application, client):
    seed(application)
    too_often = client.put("/connections/c1/sync-frequency", json={"minutes": 1}, headers=AUTH)
    assert too_often.status_code == 422
    ok = client.put("/connections/c1/sync-frequency", json={"minutes": 60}, headers=AUTH)
    assert ok.status_code == 202 and ok.json()["parameters"] == {"sync_frequency_minutes": "60"}
    assert client.get("/connections/c1").json()["summary"]["sync_frequency_minutes"] == 60


def test_control_characters_in_ids_are_a_client_error(client):
    assert client.get("/connections/a%00b").status_code == 422
    assert client.get("/connections", params={"search": "a\x00"}).status_code == 422
    assert client.get("/connections/c1/sessions/s%01").status_code == 422


@pytest.fixture
def api_schema(application):
    seed(application)
    seed(application, "c2", "plaid", accounts=())
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(application))


# The change stream never ends by design (tests/integration/test_change_feed.py reads it).
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/changes/stream")


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case):
    case.headers = {**(case.headers or {}), **AUTH}
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text)


ID_RULE = Settings().id_pattern


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    connection_id=st.from_regex(ID_RULE, fullmatch=True).filter(lambda i: len(i) <= 256),
    session_id=st.from_regex(ID_RULE, fullmatch=True).filter(lambda i: len(i) <= 256),
)
def test_every_id_the_consumer_takes_is_reachable_by_every_route(
    application, client, connection_id, session_id
):
    """One id rule: what the consumer's decoder accepts, each route serves."""
    messages = EventMessages(application.settings.event_limits())
    started = event(E.AUTHORIZATION_STARTED, connection_id, session_id)
    application.engine.apply_event(messages.decode(messages.encode(started)))
    path = f"/connections/{quote(connection_id, safe='')}"
    assert client.get(path).status_code == 200, connection_id
    assert client.get(f"{path}/history").status_code == 200
    assert client.get(f"{path}/sessions/{quote(session_id, safe='')}").status_code == 200


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "tab\there", "line\nfeed", "del\x7f", ".", ".."])
def test_ids_no_route_could_serve_are_refused_by_the_consumer_and_the_api(client, bad):
    messages = EventMessages(Settings().event_limits())
    with pytest.raises(MessageRejected, match="does not match the id rule"):
        messages.decode(messages.encode(event(E.AUTHORIZATION_STARTED, bad)))
    if "/" not in bad and bad not in (".", ".."):  # those never reach the id route at all
        assert client.get(f"/connections/{quote(bad, safe='')}").status_code == 422


def test_sync_is_refused_while_one_runs_unless_forced(application, client):
    seed(application)
    application.engine.apply_event(event(E.LOADING_STARTED, "c1"))
    refused = client.post("/connections/c1/sync", headers=AUTH)
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "a sync is in progress (Loading): wait for it to end, or force it"
    }
    forced = client.post("/connections/c1/sync?force=true", headers=AUTH)
    assert forced.status_code == 202 and forced.json()["command"] == "SYNC_AND_REFRESH"
