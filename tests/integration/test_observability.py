"""/metrics, /healthz and /readyz of a running service."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from .support import OutputReader, latest_status, publisher_for, running_service, settings_for
from .test_pipeline import E, make


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, "not listening yet"


def test_metrics_and_health_of_a_running_service(kafka, database_url):
    settings = settings_for(kafka, database_url)
    reader, publisher = OutputReader(settings), publisher_for(settings)
    now = datetime.now(UTC)
    with running_service(settings):
        port = settings.metrics_port
        deadline = time.monotonic() + 30
        while get(port, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = get(port, "/readyz")
        assert status == 200 and json.loads(body) == {
            "ready": True,
            "database": True,
            "partitions_assigned": True,
        }
        assert get(port, "/healthz")[0] == 200
        publisher.publish(make(E.AUTHORIZATION_STARTED, "m", "facebook_ads", now))
        publisher.publish(
            make(E.AUTHORIZATION_SUCCEEDED, "m", "facebook_ads", now + timedelta(seconds=1))
        )
        publisher.publish(make(E.AUTHORIZATION_SUCCEEDED, "m", "facebook_ads", now))
        publisher.flush()
        reader.wait_for(lambda seen: latest_status(seen.changes["m"]) == 9)
        _, metrics = get(port, "/metrics/")
    lines = metrics.splitlines()
    assert (
        f'syncstatus_events_consumed_total{{topic="{settings.topic_auth}",'
        'type="AUTHORIZATION_STARTED"} 1.0'
    ) in lines
    assert 'syncstatus_transitions_total{from_status="new",to_status="6"} 1.0' in lines
    assert 'syncstatus_transitions_total{from_status="6",to_status="9"} 1.0' in lines
    assert 'syncstatus_refusals_total{reason="stale"} 1.0' in lines
    assert any(line.startswith("syncstatus_apply_seconds_count") for line in lines)
    assert any(line.startswith("syncstatus_outbox_backlog ") for line in lines)
    assert any(line.startswith("syncstatus_consumer_assigned_partitions ") for line in lines)
    reader.close()
    publisher.close()
