"""`syncstatus tail` on a status topic that already holds a long history."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.statemachine.connection import Transition
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from tests.e2e.test_cli import Output

OLD_RECORDS = 100_000


def status_change(connection_id: str, sequence: int) -> bytes:
    now = datetime.now(UTC)
    return StatusChangeMessages().encode(
        Transition(
            connection_id=connection_id,
            sequence=sequence,
            session_id="s-1",
            app="shop",
            from_status=Status.AUTHORIZATION,
            to_status=Status.AUTHORIZED,
            event_id=uuid.uuid4(),
            event_type=EventType.AUTHORIZATION_SUCCEEDED,
            producer="auth",
            occurred_at=now,
            recorded_at=now,
            error=None,
            substage=None,
        )
    )


def test_tail_starts_at_the_end_and_prints_the_next_live_record(kafka):
    topic = f"t{uuid.uuid4().hex[:8]}.status"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=20)
    old = status_change("old-connection", 1)
    for i in range(OLD_RECORDS):
        producer.send(topic, key=f"old-{i % 1000}".encode(), value=old)
    producer.flush()

    env = {
        **os.environ,
        "SYNCSTATUS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SYNCSTATUS_TOPIC_STATUS": topic,
    }
    tail = subprocess.Popen(
        [sys.executable, "-m", "syncstatus.cli", "tail"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = Output(tail)
        out.wait_for(rf"following {topic} from its end\n", 30)
        producer.send(topic, key=b"live", value=status_change("live-connection", 7))
        producer.flush()
        printed = out.wait_for(r"live-connection\s+#7\s+6 Authorization -> 9 Authorized", 30)
    finally:
        tail.terminate()
        tail.wait(10)
        producer.close()
    lines = printed.splitlines()
    assert lines[0] == f"following {topic} from its end"
    assert "live-connection" in lines[1]
    assert "old-connection" not in printed
