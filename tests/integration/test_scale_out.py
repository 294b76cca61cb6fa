"""Two `syncstatus run` processes in one consumer group share the work; one dies mid-stream."""

from __future__ import annotations

import signal
import time

from syncstatus.devtools.embedded import free_port
from tests.helpers.service_metrics import assigned_partitions

from .support import (
    OutputReader,
    assert_applied_exactly_once,
    publish_paced,
    settings_for,
    start_service,
    synced_sessions,
)

CONNECTIONS = 1000


def test_two_instances_share_partitions_and_survive_losing_one(kafka, database_url, tmp_path):
    settings = settings_for(kafka, database_url)
    ports = [settings.metrics_port, free_port()]
    reader = OutputReader(settings)
    services = [
        start_service(settings.model_copy(update={"metrics_port": port}), tmp_path / f"s{i}.log")
        for i, port in enumerate(ports)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(assigned_partitions(p) > 0 for p in ports):
        time.sleep(0.3)
    shares = [assigned_partitions(p) for p in ports]
    assert all(share > 0 for share in shares), f"partitions not shared: {shares}"
    assert sum(shares) == 12  # three input topics of four partitions

    events = synced_sessions(CONNECTIONS, "scale")
    publisher = publish_paced(settings, events, per_second=3000)
    reader.wait_for(lambda seen: sum(map(len, seen.changes.values())) >= 3000, 60)
    services[0].send_signal(signal.SIGKILL)
    services[0].wait(10)
    assert sum(map(len, reader.seen.changes.values())) < len(events)
    try:
        publisher.join(60)
        seen = reader.wait_for(
            lambda seen: all(
                len({c["sequence"] for c in seen.changes[f"scale-{i}"]}) == 14
                for i in range(CONNECTIONS)
            ),
            120,
        )
        assert assigned_partitions(ports[1]) == 12
    finally:
        services[1].send_signal(signal.SIGTERM)
        assert services[1].wait(30) == 0
    reader.close()
    assert_applied_exactly_once(database_url, events, seen)
