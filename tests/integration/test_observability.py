"""/metrics, /healthz and /readyz of a running service, and what its logs never show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url

from .support import (
    OutputReader,
    env_for,
    http_get,
    latest_status,
    publisher_for,
    running_service,
    settings_for,
)
from .test_pipeline import E, make


def wait_until_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while http_get(port, "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_metrics_and_health_of_a_running_service(kafka, database_url):
    settings = settings_for(kafka, database_url, authorization_timeout_s=1)
    reader, publisher = OutputReader(settings), publisher_for(settings)
    now = datetime.now(UTC)
    with running_service(settings):
        port = settings.metrics_port
        wait_until_ready(port)
        status, body = http_get(port, "/readyz")
        assert status == 200 and json.loads(body) == {
            "ready": True,
            "database": True,
            "partitions_assigned": True,
            "loops_running": True,
        }
        assert http_get(port, "/healthz")[0] == 200
        publisher.publish(make(E.AUTHORIZATION_STARTED, "m", "facebook_ads", now))
        publisher.publish(
            make(E.AUTHORIZATION_SUCCEEDED, "m", "facebook_ads", now + timedelta(seconds=1))
        )
        publisher.publish(make(E.AUTHORIZATION_SUCCEEDED, "m", "facebook_ads", now))
        publisher.publish(make(E.AUTHORIZATION_STARTED, "abandoned", "facebook_ads", now))
        publisher.flush()
        reader.wait_for(
            lambda seen: (
                latest_status(seen.changes["m"]) == 9
                and latest_status(seen.changes["abandoned"]) == 20
            )
        )
        published = 'syncstatus_published_total{relay="status"} 4.0'
        deadline = time.monotonic() + 10  # the relay counts after its transaction commits
        while published not in (lines := http_get(port, "/metrics/")[1].splitlines()):
            assert time.monotonic() < deadline, "the status relay never counted 4 records"
            time.sleep(0.1)
    assert (
        f'syncstatus_events_consumed_total{{topic="{settings.topic_auth}",'
        'type="AUTHORIZATION_STARTED"} 2.0'
    ) in lines
    assert 'syncstatus_transitions_total{from_status="new",to_status="6"} 2.0' in lines
    assert 'syncstatus_transitions_total{from_status="6",to_status="9"} 1.0' in lines
    assert 'syncstatus_refusals_total{producer="tests",reason="stale"} 1.0' in lines
    assert 'syncstatus_sweeper_timeouts_total{to_status="20"} 1.0' in lines
    assert any(line.startswith("syncstatus_batch_size_count ") for line in lines)
    assert any(line.startswith("syncstatus_apply_seconds_count") for line in lines)
    assert 'syncstatus_relay_backlog{relay="status"} 0.0' in lines
    assert 'syncstatus_relay_backlog{relay="dead-letter"} 0.0' in lines
    assert 'syncstatus_relay_oldest_age_seconds{relay="status"} 0.0' in lines
    assert any(line.startswith("syncstatus_consumer_assigned_partitions ") for line in lines)
    reader.close()
    publisher.close()


def test_secrets_never_reach_the_logs(kafka, database_url, tmp_path):
    """At DEBUG, through a whole session: neither the API token nor the database password."""
    url = make_url(database_url).set(password="pg-secret-pw")  # trust auth ignores it
    settings = settings_for(kafka, url.render_as_string(hide_password=False), log_level="DEBUG")
    env = {
        **os.environ,
        **env_for(settings),
        "SYNCSTATUS_API_TOKEN": "api-secret-token",
        "SYNCSTATUS_KAFKA_SASL_PASSWORD": "sasl-secret-pw",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "syncstatus.cli", "run"], env=env, stdout=out, stderr=out
        )
    reader, publisher = OutputReader(settings), publisher_for(settings)
    try:
        wait_until_ready(settings.metrics_port)
        now = datetime.now(UTC)
        publisher.publish(make(E.AUTHORIZATION_STARTED, "s", "facebook_ads", now))
        publisher.publish(make(E.LOADING_COMPLETED, "s", "facebook_ads", now))
        publisher.flush()
        reader.wait_for(lambda seen: latest_status(seen.changes["s"]) == 6)
    finally:
        service.terminate()
        assert service.wait(30) == 0
        reader.close()
        publisher.close()
    text = log.read_text()
    assert '"status changed"' in text, "the DEBUG lines this test reads were not written"
    for secret in ("api-secret-token", "pg-secret-pw", "sasl-secret-pw"):
        assert secret not in text
