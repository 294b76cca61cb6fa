"""The change feed on real PostgreSQL: a cursor in commit order that nothing can appear behind,
each connection in sequence order, the catch-up routes, and the change stream (server-sent
events through a real uvicorn, the request guard and its deadline)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from syncstatus.api.app import create_app
from syncstatus.bootstrap import Application, build
from syncstatus.devtools.embedded import free_port
from syncstatus.runtime.health import HttpEndpoint
from syncstatus.schemas.changes import BEGINNING, ChangeFilter, FeedPosition
from syncstatus.schemas.codec import STATUS_CHANGED, load_schema
from syncstatus.service.inbound import Inbound
from syncstatus.settings import Settings
from syncstatus.tokens import token_digest
from tests.helpers.streams import stream

TOKEN = "adm1n"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def application(db_engine, database_url) -> Iterator[Application]:
    application = build(
        Settings(
            database_url=database_url,
            api_token=TOKEN,
            api_tokens=f"acme:read:{token_digest('acme')}:acme",
            change_stream_poll_s=0.05,
            change_stream_heartbeat_s=0.3,
            api_request_timeout_s=1.0,
        )
    )
    yield application
    application.close()


@pytest.fixture
def client(application) -> TestClient:
    return TestClient(create_app(application))


def record(application: Application, connections: int, prefix: str, per_batch: int = 5) -> None:
    events = stream(connections, prefix, datetime.now(UTC) - timedelta(minutes=5))
    for i in range(0, len(events), per_batch):
        application.engine.apply_batch([Inbound(e) for e in events[i : i + per_batch]])


def raw(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url.replace("+psycopg", ""))


def insert(connection: psycopg.Connection, connection_id: str, sequence: int) -> int:
    """A status record as the engine writes it (columns listed, the feed's by default)."""
    now = datetime.now(UTC)
    (feed_id,) = connection.execute(
        "INSERT INTO status_history (connection_id, sequence, session_id, app, from_status, "
        "to_status, event_id, event_type, producer, occurred_at, recorded_at) "
        "VALUES (%s, %s, 's', 'app', NULL, 6, %s, 'AUTHORIZATION_STARTED', 'p', %s, %s) "
        "RETURNING feed_id",
        (connection_id, sequence, uuid.uuid4(), now, now),
    ).fetchone()
    return feed_id


def feed(application: Application, after: FeedPosition = BEGINNING) -> list[tuple[str, int]]:
    page = application.changes.after(after, ChangeFilter(), 100, scope=None)
    return [(c.transition.connection_id, c.transition.sequence) for c in page.changes]


def test_a_record_committed_after_a_later_id_is_never_skipped(application, database_url):
    """Two transactions commit in the opposite order of their ids: a reader that followed
    ids would have moved past the first and lost it; the feed waits for it instead."""
    first, second = raw(database_url), raw(database_url)
    first_id = insert(first, "slow", 1)  # id taken, not committed yet
    second_id = insert(second, "fast", 1)
    second.commit()
    assert first_id < second_id
    with application.database.connect() as connection:
        visible_by_id = connection.exec_driver_sql(
            "SELECT feed_id FROM status_history WHERE feed_id > 0 ORDER BY feed_id"
        ).scalars()
        assert list(visible_by_id) == [second_id], "an id cursor would now stand past first_id"
    page = application.changes.after(BEGINNING, ChangeFilter(), 100, scope=None)
    assert page.changes == [] and page.scanned_to == BEGINNING, "nothing final while one runs"
    first.commit()
    assert feed(application) == [("slow", 1), ("fast", 1)]
    cursor = application.changes.after(BEGINNING, ChangeFilter(), 1, scope=None).scanned_to
    assert feed(application, cursor) == [("fast", 1)]
    assert str(FeedPosition.parse(str(cursor))) == str(cursor)
    first.close()
    second.close()


def test_a_connection_stays_in_sequence_order_when_its_next_writer_began_first(
    application, database_url
):
    """A transaction takes its id at its first write (the engine's event claims) and may then
    wait for the connection's lock: its record of sequence 2 carries an older transaction id
    than the one of sequence 1. The feed still lists 1 before 2."""
    early, late = raw(database_url), raw(database_url)
    (early_xid,) = early.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    late.execute("SELECT pg_current_xact_id()")
    insert(late, "x", 1)
    late.commit()
    insert(early, "x", 2)  # after the other committed, as the lock makes it
    early.commit()
    with application.database.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT sequence, feed_xid, feed_id FROM status_history ORDER BY sequence"
        ).all()
    assert rows[1][1] >= rows[0][1] > early_xid, "stamped after the previous commit"
    assert feed(application) == [("x", 1), ("x", 2)]
    early.close()
    late.close()


def test_catch_up_returns_exactly_the_missing_records(application, client):
    record(application, 3, "cu")
    missing = client.get("/connections/cu-1/changes", params={"after": 9}, headers=AUTH)
    assert missing.status_code == 200
    changes = missing.json()["changes"]
    assert [(c["connection_id"], c["sequence"]) for c in changes] == [
        ("cu-1", s) for s in range(10, 15)
    ]
    assert client.get("/connections/cu-1/changes", params={"after": 14}, headers=AUTH).json() == {
        "changes": []
    }
    assert client.get("/connections/nobody/changes", headers=AUTH).status_code == 404
    whole = client.get("/connections/cu-2/changes", params={"limit": 3}, headers=AUTH).json()
    assert [c["sequence"] for c in whole["changes"]] == [1, 2, 3]

    everything, after = [], None
    while True:
        params = {"limit": 10} if after is None else {"limit": 10, "after": after}
        page = client.get("/changes", params=params, headers=AUTH).json()
        if not page["changes"]:
            assert page["next"] == after
            break
        everything += page["changes"]
        after = page["next"]
        assert after == page["changes"][-1]["cursor"]
    assert len(everything) == 42
    assert len({c["cursor"] for c in everything}) == 42
    for connection_id in ("cu-0", "cu-1", "cu-2"):
        sequences = [c["sequence"] for c in everything if c["connection_id"] == connection_id]
        assert sequences == list(range(1, 15)), "each connection in sequence order"
    middle = everything[20]["cursor"]
    rest = client.get("/changes", params={"after": middle, "limit": 1000}, headers=AUTH).json()
    assert rest["changes"] == everything[21:], "exactly what followed the cursor"

    synced = client.get("/changes", params={"status": [19]}, headers=AUTH).json()
    assert [c["connection_id"] for c in synced["changes"]] == ["cu-0", "cu-1", "cu-2"]
    assert synced["next"] == everything[-1]["cursor"], "past what the filter passed over"
    assert client.get("/changes", params={"errors_only": True}, headers=AUTH).json() == {
        "changes": [],
        "next": everything[-1]["cursor"],
    }
    for bad in ({"after": "nope"}, {"after": "1-2-3"}, {"status": [3]}):
        assert client.get("/changes", params=bad, headers=AUTH).status_code == 400, bad
    described = client.get("/openapi.json").json()["components"]["schemas"]["ChangeOut"]
    fields = [f["name"] for f in load_schema(STATUS_CHANGED)["fields"]]
    assert list(described["properties"]) == [*fields, "cursor"], "the schema's, not a copy"
    assert list(everything[0]) == [*fields, "cursor"]


def test_catch_up_is_confined_to_the_callers_workspace(application, client):
    record(application, 1, "default-ws")
    acme = {"Authorization": "Bearer acme"}
    assert client.get("/connections/default-ws-0/changes", headers=acme).status_code == 404
    assert client.get("/changes", headers=acme).json()["changes"] == []
    other = client.get("/changes", params={"workspace": "default"}, headers=acme).json()
    assert other["changes"] == []
    assert len(client.get("/changes", headers=AUTH).json()["changes"]) == 14
    mine = client.get("/changes", params={"workspace": "default"}, headers=AUTH).json()
    assert len(mine["changes"]) == 14 and mine["changes"][0]["workspace_id"] == "default"


@contextmanager
def serving(application: Application) -> Iterator[str]:
    """The API under uvicorn as `syncstatus api` serves it (the request deadline included)."""
    port = free_port()
    endpoint = HttpEndpoint(
        create_app(application), port, "127.0.0.1", application.settings.api_request_timeout_s
    )
    stop = threading.Event()
    thread = threading.Thread(target=endpoint.run, args=(stop,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base}/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
    try:
        yield base
    finally:
        stop.set()
        thread.join(timeout=10)


class Events:
    """Reads a text/event-stream as the browser's EventSource parses it."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()
        self._event: dict[str, str] = {}
        self.comments = 0
        self.last_id: str | None = None

    def step(self) -> dict[str, str] | None:
        """One line; the event it completes, if it completes one with data."""
        line = next(self._lines)
        if line == "":
            event, self._event = self._event, {}
            if "id" in event:
                self.last_id = event["id"]
            return event if "data" in event else None
        if line.startswith(":"):
            self.comments += 1
        else:
            name, _, value = line.partition(":")
            self._event[name] = value.removeprefix(" ")
        return None

    def next(self) -> dict[str, str]:
        while (event := self.step()) is None:
            pass
        return event

    def take(self, n: int) -> list[dict[str, str]]:
        return [self.next() for _ in range(n)]


def test_the_stream_resumes_after_the_last_event_id_without_loss_or_repeat(application):
    record(application, 2, "sse")
    with serving(application) as base, httpx.Client(base_url=base, timeout=5) as http:
        assert http.get("/changes/stream").status_code == 401
        with http.stream("GET", "/changes/stream", params={"after": "0-0"}, headers=AUTH) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-frame-options"] == "DENY", "through the request guard"
            first = Events(r).take(10)
        resume = {**AUTH, "Last-Event-ID": first[-1]["id"]}
        with http.stream("GET", "/changes/stream", headers=resume) as r:
            events = Events(r)
            rest = events.take(18)
            record(application, 1, "live")
            live = events.take(14)
            started = time.monotonic()
            while time.monotonic() - started < 1.6:  # past the 1 s request deadline
                assert events.step() is None
            assert events.comments >= 3, "heartbeats while nothing happens"
            record(application, 1, "after-quiet")
            after_quiet = events.take(14)
    received = [*first, *rest, *live, *after_quiet]
    assert {e["event"] for e in received} == {"status"}
    assert [json.loads(e["data"])["cursor"] for e in received] == [e["id"] for e in received]
    expected = [c["cursor"] for c in _all(application)]
    assert [e["id"] for e in received] == expected, "every record once, in feed order"


def test_the_stream_starts_from_now_and_moves_past_filtered_records(application):
    record(application, 1, "before")
    with serving(application) as base, httpx.Client(base_url=base, timeout=5) as http:
        params = {"status": [19]}
        with http.stream("GET", "/changes/stream", params=params, headers=AUTH) as r:
            events = Events(r)
            record(application, 2, "now")
            synced = [json.loads(e["data"]) for e in events.take(2)]
            assert [(c["connection_id"], c["to_code"]) for c in synced] == [
                ("now-0", 19),
                ("now-1", 19),
            ]
            unwanted = stream(1, "unwanted", datetime.now(UTC) - timedelta(minutes=1))[:3]
            application.engine.apply_batch([Inbound(e) for e in unwanted])
            last = _all(application)[-1]
            assert last["connection_id"] == "unwanted-0"
            deadline = time.monotonic() + 5
            while events.last_id != last["cursor"]:
                assert time.monotonic() < deadline, "the position did not move past them"
                assert events.step() is None, "no event for what the filter passes over"
        acme = {"Authorization": "Bearer acme"}
        with http.stream("GET", "/changes/stream", params={"after": "0-0"}, headers=acme) as r:
            events = Events(r)
            while events.comments < 2:
                assert events.step() is None
            assert events.last_id is None, "nothing of another workspace, not even a cursor"


def _all(application: Application) -> list[dict]:
    client = TestClient(create_app(application))
    return client.get("/changes", params={"limit": 1000}, headers=AUTH).json()["changes"]
