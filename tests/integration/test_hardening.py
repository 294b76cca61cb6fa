"""Defects an attacker or a careless producer found (issue 11), each on real PostgreSQL."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from syncstatus.api.app import create_app
from syncstatus.bootstrap import build
from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.devtools.embedded import free_port
from syncstatus.runtime.health import HttpEndpoint
from syncstatus.schemas.messages import EventMessages, MessageRejected
from syncstatus.service.engine import StatusEngine
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Policy, RefusalReason
from syncstatus.statemachine.events import EventFamily, EventLimits, EventType
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.database import create_engine
from syncstatus.store.outbox import OutboxStore
from syncstatus.store.queries import ConnectionQueries
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import event

from .support import OutputReader, http_get, running_service, settings_for

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


@pytest.fixture
def west_of_utc(db_engine, database_url) -> sa.Engine:
    """The database's own time zone is New York's, as a default install's may be."""
    name = sa.make_url(database_url).database
    with db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'"))
    db_engine.dispose()
    return create_engine(database_url)


def test_a_year_one_timestamp_is_refused_as_an_invalid_event():
    message = EventMessages().encode(event(EventType.AUTHORIZATION_STARTED, at=YEAR_ONE))
    with pytest.raises(MessageRejected) as refused:
        EventMessages(EventLimits()).decode(message)
    assert refused.value.reason is RefusalReason.INVALID_EVENT
    assert "before" in refused.value.detail


def test_sessions_run_in_utc_so_extreme_timestamps_read_back(west_of_utc):
    """What the limit would let through must still never crash a reader: .NET's
    DateTime.MinValue, written past the limit straight into the engine."""
    with west_of_utc.connect() as connection:
        assert connection.execute(sa.text("SHOW timezone")).scalar_one() == "UTC"
    engine = StatusEngine(PostgresStore(west_of_utc), Policy())
    engine.apply_event(event(EventType.AUTHORIZATION_STARTED, "year-one", at=YEAR_ONE))
    (row,) = ConnectionQueries(west_of_utc).history("year-one", scope=ALL)
    assert row.occurred_at == YEAR_ONE
    with OutboxStore(west_of_utc).status_changes(10) as batch:
        assert [t.occurred_at for _, t in batch.items] == [YEAR_ONE]


def record(value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.auth",
        partition=0,
        leader_epoch=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"c1",
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=len(value),
        serialized_header_size=0,
    )


def test_a_lock_timeout_is_waited_out_never_dead_lettered(db_engine, database_url):
    """PostgreSQL's lock_timeout raises psycopg's own error through the hot path, unwrapped by
    SQLAlchemy; it is an outage to retry, not an event to refuse as unprocessable."""
    impatient = sa.create_engine(
        database_url, connect_args={"options": "-c timezone=UTC -c lock_timeout=100ms"}
    )
    consumer = EventConsumer(
        lambda: None,
        StatusEngine(PostgresStore(impatient), Policy()),
        {"t.auth": EventFamily.AUTHORIZATION},
        EventMessages(),
        100,
    )
    started = EventMessages().encode(event(EventType.AUTHORIZATION_STARTED, "c1"))
    holder = db_engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(hashtextextended('c1', 0))"))
    stop = threading.Event()
    releaser = threading.Timer(
        4.0, lambda: holder.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    )
    releaser.start()
    try:
        assert consumer._apply_until_done([record(started)], stop)
    finally:
        releaser.join()
        holder.close()
        impatient.dispose()
    with db_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar() == 0
        assert connection.execute(sa.text("SELECT status FROM connections")).scalar() == 6


@pytest.fixture
def served(db_engine, database_url):
    """The API on a real uvicorn server, as `syncstatus api` runs it."""
    settings = Settings(
        database_url=database_url,
        api_token="t0ken",
        api_request_timeout_s=1,
        api_max_body_bytes=1024,
    )
    application = build(settings)
    port = free_port()
    endpoint = HttpEndpoint(create_app(application), port, "127.0.0.1", 1)
    stop = threading.Event()
    thread = threading.Thread(target=endpoint.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while http_get(port, "/connections")[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    stop.set()
    thread.join(10)
    application.close()


def exchange(port: int, request: bytes, wait_s: float = 5) -> bytes:
    """Send raw bytes and read what the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_a_write_without_a_token_is_refused_before_its_body_is_read(served):
    huge = b"PUT /connections/x/sync-frequency HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n"
    answer = exchange(served, huge + b"Content-Type: application/json\r\n\r\n" + b"{" * 1000)
    assert answer.startswith(b"HTTP/1.1 401")
    forged = exchange(served, huge + b"Authorization: Bearer nope\r\n\r\n")
    assert forged.startswith(b"HTTP/1.1 403")


def test_bodies_over_the_cap_are_413_declared_or_streamed(served):
    headers = (
        b"PUT /connections/x/sync-frequency HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n"
    )
    declared = exchange(served, headers + b"Content-Length: 100000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413")
    chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"
    streamed = exchange(served, headers + b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
    assert streamed.startswith(b"HTTP/1.1 413")


def test_a_connection_that_never_finishes_its_request_is_closed(served):
    started = time.monotonic()
    answer = exchange(served, b"GET /connections HTTP/1.1\r\nHost: x\r\n", wait_s=10)
    assert answer == b""
    assert time.monotonic() - started < 5, "held open past the request deadline"


def test_every_response_carries_the_browser_security_headers(served):
    with urllib.request.urlopen(f"http://127.0.0.1:{served}/", timeout=5) as response:
        headers = response.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'self' covers it
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert http_get(served, "/docs")[0] == 404
    assert http_get(served, "/openapi.json")[0] == 200


def test_metrics_listen_on_the_configured_host_only(kafka, database_url):
    settings = settings_for(kafka, database_url, metrics_host="127.0.0.2")
    with running_service(settings):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.2:{settings.metrics_port}/healthz", timeout=2
                )
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("nothing listens on 127.0.0.2")
        assert http_get(settings.metrics_port, "/healthz")[0] == 0  # 127.0.0.1: nothing


def test_a_dead_letter_too_large_for_kafka_goes_out_without_its_value_and_jams_nothing(
    kafka, database_url
):
    settings = settings_for(kafka, database_url, api_token="t0ken")
    at_the_limit = bytes(range(256)) * (settings.max_message_bytes // 256)
    assert len(at_the_limit) == settings.max_message_bytes  # refused: not an event at all
    reader = OutputReader(settings)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, max_request_size=4 << 20)
    with running_service(settings):
        producer.send(settings.topic_auth, key=b"big", value=at_the_limit).get(10)
        producer.send(settings.topic_auth, key=b"small", value=b"not avro").get(10)
        seen = reader.wait_for(lambda seen: len(seen.dead_letters) >= 2, 30)
        metrics = http_get(settings.metrics_port, "/metrics/")[1]
    producer.close()
    reader.close()
    (big,) = [d for d in seen.dead_letters if d[0] == b"big"]
    key, value, headers = big
    assert value == b""
    assert headers["truncated"] == b"true"
    assert headers["reason"] == b"undecodable"
    assert headers["source_topic"] == settings.topic_auth.encode()
    assert int(headers["original_size"]) == len(at_the_limit)
    assert headers["original_sha256"].decode() == hashlib.sha256(at_the_limit).hexdigest()
    assert [d[0] for d in seen.dead_letters].count(b"small") == 1
    assert 'syncstatus_records_too_large_total{relay="dead-letter"} 1.0' in metrics.splitlines()
    application = build(settings)
    client = TestClient(create_app(application))
    path = f"/dead-letters/{int(headers['dead_letter_id'])}/original"
    assert client.get(path).status_code == 401
    served = client.get(path, headers={"Authorization": "Bearer t0ken"})
    application.close()
    assert served.content == at_the_limit
