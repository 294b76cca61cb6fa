"""Crashes mid-stream: nothing accepted is lost, nothing is applied twice, no sequence gaps."""

from __future__ import annotations

import json
import signal
import time

import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from syncstatus.consumers.reader import TopicReader
from syncstatus.devtools.embedded import EmbeddedPostgres
from syncstatus.kafka import client_config, input_topics
from syncstatus.schemas.messages import EventMessages

from .support import (
    OutputReader,
    assert_applied_exactly_once,
    http_get,
    publish_paced,
    running_service,
    settings_for,
    start_service,
    synced_sessions,
)


def changes_seen(seen) -> int:
    return sum(len(c) for c in seen.changes.values())


def signalled_mid_stream(settings, events, log, signal_number):
    """The service as a process under a steady stream, sent `signal_number` once 1,000 status
    changes are out; returns it, the publishing thread and the output reader."""
    reader = OutputReader(settings)
    service = start_service(settings, log)
    deadline = time.monotonic() + 60
    while http_get(settings.metrics_port, "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # the stream must still be flowing when the signal lands
    publisher = publish_paced(settings, events, per_second=1000)
    reader.wait_for(lambda seen: changes_seen(seen) >= 1000, 60)
    service.send_signal(signal_number)
    return service, publisher, reader


def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(kafka, database_url, tmp_path):
    settings = settings_for(kafka, database_url)
    events = synced_sessions(300, "kill")
    log = tmp_path / "service.log"
    service, publisher, reader = signalled_mid_stream(settings, events, log, signal.SIGKILL)
    assert changes_seen(reader.seen) < len(events), "the kill came too late to matter"
    service.wait(10)
    service = start_service(settings, log)
    try:
        publisher.join(60)
        seen = reader.wait_for(
            lambda seen: all(
                len({c["sequence"] for c in seen.changes[f"kill-{i}"]}) == 14 for i in range(300)
            ),
            90,
            lambda seen: changes_seen(seen),
        )
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0, log.read_text()[-3000:]
    reader.close()
    assert_applied_exactly_once(database_url, events, seen)


def test_database_stopped_and_restarted_mid_stream(kafka, tmp_path, capfd):
    postgres = EmbeddedPostgres(tmp_path / "pg")
    postgres.start()
    try:
        database_url = postgres.url
        settings = settings_for(kafka, database_url)
        events = synced_sessions(300, "db")
        reader = OutputReader(settings)
        with running_service(settings):
            publisher = publish_paced(settings, events, per_second=1500)
            reader.wait_for(lambda seen: changes_seen(seen) >= 1000, 60)
            postgres.stop()
            time.sleep(3)
            assert changes_seen(reader.seen) < len(events), "the outage came too late to matter"
            status, body = http_get(settings.metrics_port, "/readyz")
            assert (status, json.loads(body)["database"]) == (503, False)
            assert http_get(settings.metrics_port, "/healthz")[0] == 200, "alive, only unready"
            postgres.start()
            publisher.join(60)
            seen = reader.wait_for(
                lambda seen: all(
                    len({c["sequence"] for c in seen.changes[f"db-{i}"]}) == 14 for i in range(300)
                ),
                90,
                lambda seen: changes_seen(seen),
            )
        reader.close()
        assert_applied_exactly_once(database_url, events, seen)
        captured = capfd.readouterr()
        assert "batch not applied (database unavailable or lost a race); retrying" in (
            captured.out + captured.err
        )
    finally:
        postgres.stop()


def test_sigterm_mid_stream_commits_exactly_what_it_applied(kafka, database_url, tmp_path):
    """SIGTERM finishes the batch in hand: afterwards every input partition's committed offset
    is exactly the line between the events applied and those not yet read."""
    settings = settings_for(kafka, database_url)
    events = synced_sessions(300, "term")
    log = tmp_path / "service.log"
    service, publisher, reader = signalled_mid_stream(settings, events, log, signal.SIGTERM)
    assert service.wait(30) == 0, log.read_text()[-3000:]
    publisher.join(60)
    reader.close()
    applied = applied_event_ids(database_url)
    assert 0 < len(applied) < len(events), "the stop came too late to matter"
    committed = committed_offsets(settings)
    inputs = TopicReader(client_config(settings), list(input_topics(settings)), from_beginning=True)
    messages, decode = [], EventMessages()
    while len(messages) < len(events):
        messages += inputs.poll(200)
    inputs.close()
    for record in messages:
        offset = committed.get(TopicPartition(record.topic, record.partition), 0)
        was_applied = decode.decode(record.value).event_id in applied
        assert was_applied == (record.offset < offset), (record.topic, record.partition)


def applied_event_ids(database_url: str) -> set:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        ids = {row[0] for row in connection.execute(sa.text("SELECT event_id FROM status_history"))}
    engine.dispose()
    return ids


def committed_offsets(settings) -> dict[TopicPartition, int]:
    group = KafkaConsumer(**client_config(settings), group_id=settings.consumer_group)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in input_topics(settings)
            for p in group.partitions_for_topic(topic) or ()
        ]
        return {tp: offset for tp in partitions if (offset := group.committed(tp)) is not None}
    finally:
        group.close()
