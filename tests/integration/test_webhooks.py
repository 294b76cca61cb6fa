"""Webhooks to a real HTTP receiver on loopback: signed, in order, retried, paused alone,
redelivered, and claimed by one relay at a time.

The first test runs the whole service (Tansu, PostgreSQL, `syncstatus run`'s loops); the others
record status changes with the engine directly and run the webhook relay alone, which reads
the same committed records.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from syncstatus.api.app import create_app
from syncstatus.bootstrap import Application, _webhook_relay, build
from syncstatus.runtime.metrics import Metrics
from syncstatus.schemas.codec import STATUS_CHANGED, load_schema
from syncstatus.service.inbound import Inbound
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, SessionEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.store.database import migrate
from syncstatus.store.retention import RetentionStore
from syncstatus.tokens import token_digest
from tests.helpers.streams import stream
from tests.helpers.webhook_receiver import Received, always, receiving

from .support import http_get, publisher_for, running_service, settings_for, synced_sessions

TOKEN = "adm1n"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FAST = {
    "api_token": TOKEN,
    "webhook_allow_http_loopback": True,
    "webhook_timeout_s": 2,
    "webhook_connect_timeout_s": 2,
    "webhook_retry_initial_s": 0.05,
    "webhook_retry_max_s": 0.2,
    "webhook_retry_period_s": 30,
    "relay_idle_s": 0.05,
    "webhook_batch_size": 20,
}
FIELDS = {f["name"] for f in load_schema(STATUS_CHANGED)["fields"]}


@pytest.fixture
def application(db_engine, database_url) -> Iterator[Application]:
    application = build(Settings(database_url=database_url, **FAST))
    yield application
    application.close()


@pytest.fixture
def client(application) -> TestClient:
    return TestClient(create_app(application))


def subscribe(client: TestClient, url: str, **body) -> dict:
    created = client.post("/webhooks", json={"url": url, **body}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()


@contextmanager
def relay_running(application: Application, metrics: Metrics | None = None) -> Iterator[None]:
    """The webhook relay loop of `syncstatus run`, alone."""
    loop = _webhook_relay(application, metrics or Metrics())
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive()


def record(application: Application, connections: int, prefix: str, per_batch: int = 7) -> int:
    """Authorization → Synced for each connection, a few events per transaction; the number
    of status changes recorded."""
    events = stream(connections, prefix, datetime.now(UTC) - timedelta(minutes=5))
    for i in range(0, len(events), per_batch):
        application.engine.apply_batch([Inbound(e) for e in events[i : i + per_batch]])
    return len(events)


def verify(received: list[Received], secret: str) -> None:
    """Every request verifies with the secret, as a receiver checks it; a forged one fails."""
    webhook = Webhook(secret)
    for r in received:
        assert webhook.verify(r.body, r.headers) == r.payload
    if received:
        forged = received[0].body.replace(b'"sequence":', b'"sequence":1')
        with pytest.raises(WebhookVerificationError):
            webhook.verify(forged, received[0].headers)


def first_seen(received: list[Received]) -> list[Received]:
    """What a receiver keeps when it drops every `webhook-id` it already has."""
    seen: set[str] = set()
    kept = []
    for r in received:
        if r.message_id not in seen:
            seen.add(r.message_id)
            kept.append(r)
    return kept


def in_sequence_order(kept: list[Received], expected: dict[str, int]) -> None:
    """Each connection's records arrived as 1, 2, 3... with none missing."""
    by_connection: dict[str, list[int]] = defaultdict(list)
    for r in kept:
        by_connection[r.change["connection_id"]].append(r.change["sequence"])
    assert dict(by_connection) == {c: list(range(1, n + 1)) for c, n in expected.items()}


def history_counts(application: Application, prefix: str) -> dict[str, int]:
    with application.database.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT connection_id, max(sequence) FROM status_history "
                "WHERE connection_id LIKE :p GROUP BY 1"
            ),
            {"p": f"{prefix}-%"},
        ).all()
    return dict(rows)


def test_the_running_service_delivers_every_change_signed_and_in_order(kafka, database_url):
    settings = settings_for(kafka, database_url, **FAST)
    application = build(settings)
    migrate(application.database)
    client = TestClient(create_app(application))
    events = synced_sessions(4, "wh")
    with receiving() as receiver, running_service(settings):
        subscription = subscribe(client, receiver.url())
        publisher = publisher_for(settings)
        for e in events:
            publisher.publish(e)
        publisher.flush()
        publisher.close()
        receiver.wait_for(lambda r: len(r.accepted("/hook")) >= len(events), what="all changes")
        sid = subscription["id"]
        delivered = (
            f'syncstatus_webhook_deliveries_total{{outcome="delivered",subscription="{sid}"}}'
        )
        deadline = time.monotonic() + 10
        while f"{delivered} 56.0" not in (
            metrics := http_get(settings.metrics_port, "/metrics")[1]
        ):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
    received = receiver.at("/hook")
    assert len(received) == len(events), "each change once, with a receiver that never fails"
    verify(received, subscription["secret"])
    in_sequence_order(received, {f"wh-{c}": 14 for c in range(4)})
    change = received[-1].change
    assert set(change) == FIELDS | {"cursor"}, "every field of StatusChanged, and the cursor"
    assert received[-1].payload["type"] == "connection.status_changed"
    assert (change["to_code"], change["to_name"]) == (int(Status.SYNCED), "Synced")
    assert f'syncstatus_webhook_backlog{{subscription="{sid}"}} 0.0' in metrics
    assert "syncstatus_webhook_delivery_seconds_count 56.0" in metrics
    shown = client.get(f"/webhooks/{sid}", headers=ADMIN).json()
    assert shown["state"] == "active" and "secret" not in shown
    assert shown["position"] == change["cursor"]
    log = client.get(f"/webhooks/{sid}/deliveries", params={"limit": 5}, headers=ADMIN).json()
    assert [d["outcome"] for d in log["deliveries"]] == ["delivered"] * 5
    assert log["deliveries"][0]["message_id"] == received[-1].message_id
    assert log["deliveries"][0]["status_code"] == 200 and log["before"] is not None
    application.close()


def test_a_receiver_that_fails_for_a_while_gets_everything_once_in_order(application, client):
    """500s, then timeouts, then it recovers: every record arrives, in order per connection,
    and none is delivered twice; the duplicates (timed-out attempts it did receive) carry the
    webhook-id of a record it already has, so it drops them."""

    def flaky(_path: str, n: int) -> tuple[int, float]:
        if n < 4:
            return 500, 0.0
        if n < 7:
            return 200, 1.2  # answered after the sender's timeout
        return 200, 0.0

    application.settings.webhook_timeout_s = 0.6
    with receiving(flaky) as receiver:
        subscription = subscribe(client, receiver.url())
        path = f"/webhooks/{subscription['id']}/deliveries"
        with relay_running(application):
            total = record(application, 3, "flaky")
            receiver.wait_for(
                lambda r: len(first_seen(r.at("/hook"))) >= total, what="the receiver recovers"
            )
            deadline = time.monotonic() + 10
            while True:
                log = client.get(path, params={"limit": 500}, headers=ADMIN).json()
                delivered = [d for d in log["deliveries"] if d["outcome"] == "delivered"]
                if len(delivered) >= total:
                    break
                assert time.monotonic() < deadline, "the deliveries were not all recorded"
                time.sleep(0.05)
    assert len(delivered) == total == len({d["message_id"] for d in delivered}), "none twice"
    received = receiver.at("/hook")
    verify(received, subscription["secret"])
    kept = first_seen(received)
    in_sequence_order(kept, history_counts(application, "flaky"))
    assert len(received) >= total + 4 + 3, "the failed attempts were all tried again"
    ids = {k.message_id for k in kept}
    duplicates = [r for r in received if r not in kept]
    assert duplicates and all(r.message_id in ids for r in duplicates)
    assert all(a.body == b.body for a in duplicates for b in kept if a.message_id == b.message_id)
    log = log["deliveries"][::-1]
    assert [d["outcome"] for d in log[:7]] == ["rejected"] * 4 + ["timeout"] * 3
    assert [d["status_code"] for d in log[:4]] == [500] * 4
    assert [d["attempt"] for d in log[:8]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {d["message_id"] for d in log[:8]} == {received[0].message_id}
    assert all(d["seconds"] > 0 for d in log)


def test_a_subscription_that_keeps_failing_pauses_alone(application, client):
    application.settings.webhook_retry_period_s = 0.8
    with receiving(lambda path, _n: (500 if path == "/down" else 200, 0.0)) as receiver:
        down = subscribe(client, receiver.url("/down"), description="down")
        up = subscribe(client, receiver.url("/up"), description="up")
        with relay_running(application):
            total = record(application, 2, "pause")
            receiver.wait_for(lambda r: len(r.accepted("/up")) >= total, what="up receives")
            deadline = time.monotonic() + 10
            while client.get(f"/webhooks/{down['id']}", headers=ADMIN).json()["state"] != (
                "failing"
            ):
                assert time.monotonic() < deadline, "the failing one was not paused"
                time.sleep(0.05)
            tried = len(receiver.at("/down"))
            more = record(application, 1, "later")
            receiver.wait_for(lambda r: len(r.accepted("/up")) >= total + more, what="up goes on")
            time.sleep(0.3)
            assert len(receiver.at("/down")) == tried, "a paused subscription is left alone"
            paused = client.get(f"/webhooks/{down['id']}", headers=ADMIN).json()
            assert paused["pause_reason"].startswith(f"{tried} failed attempts since")
            assert paused["retry_at"] is None and paused["attempts"] == tried
            assert {r.change["sequence"] for r in receiver.at("/down")} == {1}
            assert client.post(f"/webhooks/{up['id']}/resume", headers=ADMIN).status_code == 409

            receiver.behaviour = always(200)
            resumed = client.post(f"/webhooks/{down['id']}/resume", headers=ADMIN)
            assert resumed.status_code == 200 and resumed.json()["state"] == "active"
            receiver.wait_for(
                lambda r: len(r.accepted("/down")) >= total + more, what="down catches up"
            )
    counts = {**history_counts(application, "pause"), **history_counts(application, "later")}
    in_sequence_order(receiver.accepted("/down"), counts)
    in_sequence_order(receiver.accepted("/up"), counts)


def test_redelivery_of_a_connection_and_a_rewind(application, client):
    with receiving() as receiver:
        subscription = subscribe(client, receiver.url())
        sid = subscription["id"]
        with relay_running(application):
            total = record(application, 2, "again")
            receiver.wait_for(lambda r: len(r.at("/hook")) >= total, what="first delivery")
            first = receiver.at("/hook")
            asked = client.post(
                f"/webhooks/{sid}/redeliver",
                params={"connection_id": "again-1", "from_sequence": 12},
                headers=ADMIN,
            )
            assert asked.status_code == 202, asked.text
            assert (asked.json()["next_sequence"], asked.json()["last_sequence"]) == (12, 14)
            receiver.wait_for(lambda r: len(r.at("/hook")) >= total + 3, what="redelivery")
            again = receiver.at("/hook")[total:]
            assert [(r.change["connection_id"], r.change["sequence"]) for r in again] == [
                ("again-1", 12),
                ("again-1", 13),
                ("again-1", 14),
            ]
            ids = {(r.change["connection_id"], r.change["sequence"]): r.message_id for r in first}
            assert [r.message_id for r in again] == [ids["again-1", s] for s in (12, 13, 14)]

            cursor = first[20]
            rewound = client.post(
                f"/webhooks/{sid}/redeliver",
                params={"after": cursor.change["cursor"]},
                headers=ADMIN,
            )
            assert rewound.status_code == 202, rewound.text
            receiver.wait_for(lambda r: len(r.at("/hook")) >= total + 3 + total - 21, what="rewind")
            replayed = receiver.at("/hook")[total + 3 :]
            assert [r.message_id for r in replayed] == [r.message_id for r in first[21:]]
        done = client.get(f"/webhooks/{sid}/redeliveries", headers=ADMIN).json()
        assert [r["done_at"] is not None for r in done["redeliveries"]] == [True, True]
    log = client.get(f"/webhooks/{sid}/deliveries", params={"limit": 500}, headers=ADMIN).json()
    assert sum(d["redelivery"] for d in log["deliveries"]) == 3
    not_yet = client.post(
        f"/webhooks/{sid}/redeliver", params={"after": "999999999-1"}, headers=ADMIN
    )
    assert not_yet.status_code == 409
    unknown = client.post(
        f"/webhooks/{sid}/redeliver", params={"connection_id": "nobody"}, headers=ADMIN
    )
    assert unknown.status_code == 404


def test_two_relays_deliver_each_record_once_and_in_order(application, client):
    """Two processes' relays on one database: each subscription is claimed by one at a time."""
    with receiving(lambda _p, _n: (200, 0.002)) as receiver:
        subscriptions = [subscribe(client, receiver.url(f"/s{i}")) for i in range(3)]
        other = build(application.settings)
        metrics = Metrics(), Metrics()
        with relay_running(application, metrics[0]), relay_running(other, metrics[1]):
            total = record(application, 6, "twice", per_batch=11)
            for i in range(3):
                receiver.wait_for(lambda r, i=i: len(r.at(f"/s{i}")) >= total, what=f"s{i}")
            time.sleep(0.3)
        other.close()
    counts = history_counts(application, "twice")
    for i, subscription in enumerate(subscriptions):
        received = receiver.at(f"/s{i}")
        assert len(received) == total, "no record delivered by both relays"
        in_sequence_order(received, counts)
        verify(received[:3], subscription["secret"])
    counted = sum(
        sample.value
        for m in metrics
        for family in m.webhook_deliveries.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    assert counted == 3 * total, "each delivery made by one relay"


def test_filters_deleted_subscriptions_and_the_log_retention(application, client):
    with receiving() as receiver:
        errors = subscribe(client, receiver.url("/errors"), errors_only=True)
        synced = subscribe(client, receiver.url("/synced"), statuses=[19], apps=["facebook_ads"])
        gone = subscribe(client, receiver.url("/gone"))
        assert client.delete(f"/webhooks/{gone['id']}", headers=ADMIN).status_code == 204
        assert client.get(f"/webhooks/{gone['id']}", headers=ADMIN).status_code == 404
        with relay_running(application):
            record(application, 2, "filters")
            events = stream(1, "failing", datetime.now(UTC) - timedelta(minutes=1))[:3]
            failed = SessionEvent(
                event_id=uuid.uuid4(),
                type=EventType.LOADING_FAILED,
                connection_id="failing-0",
                session_id="failing-session-0",
                app="facebook_ads",
                occurred_at=events[-1].occurred_at + timedelta(seconds=1),
                producer="tests",
                error="boom",
            )
            application.engine.apply_batch([Inbound(e) for e in [*events, failed]])
            receiver.wait_for(lambda r: len(r.at("/synced")) >= 2, what="synced")
            receiver.wait_for(lambda r: len(r.at("/errors")) >= 1, what="errors")
            time.sleep(0.3)
    assert [r.change["connection_id"] for r in receiver.at("/synced")] == ["filters-0", "filters-1"]
    assert [(r.change["to_code"], r.change["error"]) for r in receiver.at("/errors")] == [
        (int(Status.LOADING_ERROR), "boom")
    ]
    assert receiver.at("/gone") == []
    listed = client.get("/webhooks", headers=ADMIN).json()["webhooks"]
    assert [w["id"] for w in listed] == [errors["id"], synced["id"]]
    assert listed[1]["statuses"] == [19] and listed[1]["apps"] == ["facebook_ads"]
    assert all("secret" not in w for w in listed)
    retention = RetentionStore(application.database)
    later = datetime.now(UTC) + timedelta(days=8)
    pruned = retention.prune(later, timedelta(days=1), timedelta(days=7), timedelta(days=7))
    assert pruned.webhook_deliveries == 3
    log = client.get(f"/webhooks/{synced['id']}/deliveries", headers=ADMIN).json()
    assert log == {"deliveries": [], "before": None}


def test_subscriptions_need_an_admin_token_and_a_safe_target(db_engine, database_url):
    tokens = ",".join(
        [f"reader:read:{token_digest('r')}", f"ops:operate:{token_digest('o')}"]
        + [f"acme:admin:{token_digest('a')}:acme"]
    )
    application = build(
        Settings(
            database_url=database_url, api_token=TOKEN, api_tokens=tokens, api_public_reads=True
        )
    )
    client = TestClient(create_app(application))
    body = {"url": "https://example.com/hook"}
    assert client.get("/webhooks").status_code == 401
    for token in ("r", "o"):
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/webhooks", json=body, headers=headers).status_code == 403
        assert client.get("/webhooks", headers=headers).status_code == 403
    for url, why in [
        ("http://example.com/hook", "must be https"),
        ("http://127.0.0.1:9/hook", "must be https"),
        ("ftp://example.com/", "must be https"),
        ("https://user:pw@example.com/", "no credentials"),
        ("https:///nohost", "no host"),
    ]:
        refused = client.post("/webhooks", json={"url": url}, headers=ADMIN)
        assert refused.status_code == 400 and why in refused.json()["detail"], url
    for bad in ({"statuses": [3]}, {"after": "x"}, {"url": "https://a\x00b/"}):
        refused = client.post("/webhooks", json={**body, **bad}, headers=ADMIN)
        assert refused.status_code in (400, 422), bad

    everyone = client.post("/webhooks", json=body, headers=ADMIN).json()
    acme_headers = {"Authorization": "Bearer a"}
    acme = client.post("/webhooks", json=body, headers=acme_headers)
    assert acme.status_code == 201 and acme.json()["workspace"] == "acme"
    other = client.post("/webhooks", json={**body, "workspace": "zeta"}, headers=acme_headers)
    assert other.status_code == 404
    listed = client.get("/webhooks", headers=acme_headers).json()["webhooks"]
    assert [w["id"] for w in listed] == [acme.json()["id"]]
    for path in ("", "/deliveries", "/redeliveries"):
        assert (
            client.get(f"/webhooks/{everyone['id']}{path}", headers=acme_headers).status_code == 404
        )
    assert client.delete(f"/webhooks/{everyone['id']}", headers=acme_headers).status_code == 404
    assert len(client.get("/webhooks", headers=ADMIN).json()["webhooks"]) == 2
    application.close()


def test_more_subscriptions_than_workers_take_turns(application, client):
    """A worker keeps a caught-up subscription between wakes, but lets go of it as soon as
    another subscription waits for a worker."""
    application.settings.webhook_workers = 1
    with receiving() as receiver:
        for i in range(3):
            subscribe(client, receiver.url(f"/w{i}"))
        with relay_running(application):
            total = record(application, 2, "turns")
            for i in range(3):
                receiver.wait_for(lambda r, i=i: len(r.at(f"/w{i}")) >= total, what=f"w{i}")
            more = record(application, 1, "turns-later")
            for i in range(3):
                receiver.wait_for(
                    lambda r, i=i: len(r.at(f"/w{i}")) >= total + more, what=f"w{i} later"
                )
    counts = {**history_counts(application, "turns"), **history_counts(application, "turns-")}
    for i in range(3):
        in_sequence_order(receiver.at(f"/w{i}"), counts)
