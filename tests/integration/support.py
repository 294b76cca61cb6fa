"""Driving the real service through Kafka: settings per test, the service in a thread, and
readers of the output topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from syncstatus.bootstrap import build, build_service
from syncstatus.consumers.reader import TopicReader
from syncstatus.devtools.embedded import EmbeddedKafka, free_port
from syncstatus.kafka import client_config, ensure_topics, family_topics
from syncstatus.producers.publisher import EventPublisher
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.settings import Settings
from syncstatus.statemachine.events import SessionEvent
from syncstatus.statemachine.statuses import Status
from tests.helpers.streams import stream


def settings_for(kafka: EmbeddedKafka, database_url: str, **overrides: object) -> Settings:
    """Topics and group of their own, so tests on one broker never see each other."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    values: dict[str, object] = {
        "database_url": database_url,
        "bootstrap_servers": kafka.bootstrap_servers,
        "topic_auth": f"{prefix}.auth",
        "topic_webhooks": f"{prefix}.webhooks",
        "topic_pipeline": f"{prefix}.pipeline",
        "topic_status": f"{prefix}.status",
        "topic_dead_letter": f"{prefix}.dead-letter",
        "consumer_group": f"{prefix}.syncstatus",
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "sweep_interval_s": 0.2,
        "log_level": "WARNING",
        "metrics_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)


def env_for(settings: Settings) -> dict[str, str]:
    """The same settings as SYNCSTATUS_* variables, for a service run as a process."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"SYNCSTATUS_{name.upper()}"] = (
                value if isinstance(value, str) else json.dumps(value)
            )
    return env


@contextmanager
def running_service(settings: Settings) -> Iterator[None]:
    application = build(settings)
    service = build_service(application)
    thread = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        service.stop.set()
        thread.join(timeout=30)
        application.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body; 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, "not listening yet"


def publisher_for(settings: Settings) -> EventPublisher:
    return EventPublisher(client_config(settings), family_topics(settings))


@dataclass
class Outputs:
    """Everything seen on the status and dead-letter topics so far."""

    changes: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[tuple[bytes | None, bytes, dict[str, bytes]]] = field(default_factory=list)


class OutputReader:
    def __init__(self, settings: Settings) -> None:
        ensure_topics(settings)
        self.settings = settings
        self._reader = TopicReader(
            client_config(settings),
            [settings.topic_status, settings.topic_dead_letter],
            from_beginning=True,
        )
        self._messages = StatusChangeMessages()
        self.seen = Outputs()

    def poll(self) -> None:
        for record in self._reader.poll(100):
            if record.topic == self.settings.topic_status:
                change = self._messages.decode(record.value)
                self.seen.changes[change["connection_id"]].append(change)
            else:
                self.seen.dead_letters.append(
                    (record.key, record.value, {k: v for k, v in record.headers or []})
                )

    def wait_for(
        self,
        condition: Callable[[Outputs], bool],
        timeout_s: float = 30,
        explain: Callable[[Outputs], object] = lambda seen: seen,
    ) -> Outputs:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if condition(self.seen):
                return self.seen
        raise AssertionError(f"not met within {timeout_s} s: {explain(self.seen)}")

    def close(self) -> None:
        self._reader.close()


def latest_status(changes: list[dict]) -> int | None:
    """The status after the highest sequence seen, None before the first change."""
    return max(changes, key=lambda c: c["sequence"])["to_code"] if changes else None


def gapless(changes: list[dict]) -> bool:
    """Sequences 1..n, each first seen in order (duplicates allowed after a crash)."""
    first_seen: list[int] = []
    for change in changes:
        if change["sequence"] not in first_seen:
            first_seen.append(change["sequence"])
    return first_seen == list(range(1, len(first_seen) + 1))


def synced_sessions(connections: int, prefix: str) -> list[SessionEvent]:
    """Every connection from Authorization to Synced, step k of all before step k+1 of any."""
    return stream(connections, prefix, datetime.now(UTC), "tests")


def assert_applied_exactly_once(db_url: str, events: list[SessionEvent], seen: Outputs) -> None:
    """Every event applied once, every connection at Synced with sequences 1..14 on the topic."""
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        history = connection.execute(
            sa.text("SELECT event_id, count(*) FROM status_history GROUP BY event_id")
        ).all()
        statuses = connection.execute(
            sa.text("SELECT status, version, count(*) FROM connections GROUP BY status, version")
        ).all()
        processed = connection.execute(sa.text("SELECT count(*) FROM processed_events")).scalar()
    engine.dispose()
    connections = len({e.connection_id for e in events})
    assert {event_id for event_id, _ in history} == {e.event_id for e in events}
    assert all(count == 1 for _, count in history), "an event was applied twice"
    assert statuses == [(Status.SYNCED, 14, connections)]
    assert processed == len(events)
    for connection_id in {e.connection_id for e in events}:
        changes = seen.changes[connection_id]
        assert gapless(changes), connection_id
        assert {c["sequence"] for c in changes} == set(range(1, 15)), connection_id


def publish_paced(settings, events, per_second: int) -> threading.Thread:
    """Publish in the background at a steady rate, so faults land mid-stream."""

    def publish() -> None:
        publisher = publisher_for(settings)
        for i, event in enumerate(events):
            publisher.publish(event)
            if i % 100 == 99:
                publisher.flush()
                time.sleep(100 / per_second)
        publisher.flush()
        publisher.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def start_service(settings, log_path) -> subprocess.Popen:
    env = {**os.environ, **env_for(settings)}
    return subprocess.Popen(
        [sys.executable, "-m", "syncstatus.cli", "run"],
        env=env,
        stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
