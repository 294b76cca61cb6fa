"""The relay survives a broker outage: status changes recorded meanwhile arrive afterwards,
in order and without gaps."""

from __future__ import annotations

import time
from datetime import timedelta

from syncstatus.devtools.embedded import EmbeddedKafka
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound
from syncstatus.statemachine.connection import Policy
from syncstatus.store.database import create_engine
from syncstatus.store.uow import PostgresStore

from .support import OutputReader, gapless, running_service, settings_for, synced_sessions


def test_status_changes_recorded_while_the_broker_is_down_arrive_later(database_url, tmp_path):
    with EmbeddedKafka(log_file=tmp_path / "tansu.log") as kafka:
        settings = settings_for(kafka, database_url, delivery_timeout_ms=3000)
        reader = OutputReader(settings)
        database = create_engine(database_url)
        engine = StatusEngine(PostgresStore(database), Policy())
        events = synced_sessions(50, "outage")
        with running_service(settings):
            engine.apply_batch([Inbound(e) for e in events[:100]])
            reader.wait_for(lambda seen: sum(map(len, seen.changes.values())) == 100)
            kafka.pause()
            engine.apply_batch([Inbound(e) for e in events[100:]])
            time.sleep(5)  # longer than the producer's delivery timeout
            kafka.resume()
            seen = reader.wait_for(
                lambda seen: (
                    sum(len({c["sequence"] for c in changes}) for changes in seen.changes.values())
                    == len(events)
                ),
                60,
            )
        database.dispose()
        reader.close()
    for changes in seen.changes.values():
        assert gapless(changes)
        assert max(c["sequence"] for c in changes) == 14
    assert timedelta(0) < max(c["recorded_at"] for cs in seen.changes.values() for c in cs) - min(
        c["recorded_at"] for cs in seen.changes.values() for c in cs
    )
