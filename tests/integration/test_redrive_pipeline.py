"""A redrive through Kafka, on Tansu and embedded PostgreSQL, with the service running.

The authorization service was wrong: its DEAUTHORIZED overtook the re-authorization stamped
before it and found the connection Disconnected, so it was refused as an illegal transition.
Once the re-authorization is in, the dead letter is redriven: the redrive relay publishes the
original key and bytes on the auth topic again, the consumer applies the event exactly once,
and a second redrive of the same dead letter changes nothing.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from syncstatus.bootstrap import build
from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config
from syncstatus.schemas.messages import EventMessages
from syncstatus.service.inbound import REDRIVE_HEADER, REDRIVEN_BY_HEADER
from syncstatus.statemachine.connection import Outcome
from syncstatus.statemachine.events import EventType, SessionEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.dead_letters import DeadLetterFilter

from .support import OutputReader, latest_status, publisher_for, running_service, settings_for

E = EventType
NOW = datetime.now(UTC)


def auth(kind: EventType, session: str, seconds: int) -> SessionEvent:
    return SessionEvent(
        event_id=uuid.uuid4(),
        type=kind,
        connection_id="r1",
        session_id=session,
        app="facebook_ads",
        occurred_at=NOW + timedelta(seconds=seconds),
        producer="auth-service",
    )


def wait_until(condition, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)


def test_a_dead_letter_redriven_when_the_connection_is_ready_applies_exactly_once(
    kafka, database_url
):
    settings = settings_for(kafka, database_url)
    reader, publisher = OutputReader(settings), publisher_for(settings)
    application = build(settings)
    deauthorized = auth(E.DEAUTHORIZED, "revocation", 4)
    marker = auth(E.AUTHORIZATION_STARTED, "s3", 6)
    with running_service(settings):
        for e in (
            auth(E.AUTHORIZATION_STARTED, "s1", 0),
            auth(E.AUTHORIZATION_SUCCEEDED, "s1", 1),
            auth(E.DISCONNECTED, "s1", 2),
            deauthorized,
        ):
            publisher.publish(e)
        publisher.flush()
        reader.wait_for(lambda seen: seen.dead_letters and latest_status(seen.changes["r1"]) == 26)
        (letter,) = application.dead_letters.list(
            DeadLetterFilter(connection_id="r1"), scope=ALL
        ).items
        assert (letter.reason, letter.event_id) == ("illegal_transition", deauthorized.event_id)
        assert application.triage.dry_run(letter.id, scope=ALL).outcome is Outcome.REFUSED

        publisher.publish(auth(E.AUTHORIZATION_STARTED, "s2", 3))  # the one delivered late
        publisher.flush()
        reader.wait_for(lambda seen: latest_status(seen.changes["r1"]) == Status.AUTHORIZATION)
        verdict = application.triage.dry_run(letter.id, scope=ALL)
        assert (verdict.outcome, verdict.to_status) == (Outcome.APPLIED, Status.DEAUTHORIZED)

        assert application.triage.redrive([letter.id], "alice", scope=ALL).requested == [letter.id]
        reader.wait_for(lambda seen: latest_status(seen.changes["r1"]) == Status.DEAUTHORIZED)
        assert application.triage.dry_run(letter.id, scope=ALL).outcome is Outcome.DUPLICATE
        application.triage.redrive([letter.id], "bob", scope=ALL)
        wait_until(
            lambda: all(
                r.published_at for r in application.dead_letters.show(letter.id, scope=ALL).redrives
            ),
            "both redrives published",
        )
        publisher.publish(marker)  # after the second redrive on the same partition
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: any(c["cause_event_id"] == marker.event_id for c in seen.changes["r1"])
        )
    causes = [c["cause_event_type"] for c in seen.changes["r1"]]
    assert causes.count("DEAUTHORIZED") == 1
    with application.database.connect() as connection:
        applied = connection.execute(
            sa.text("SELECT from_status, to_status FROM status_history WHERE event_id = :e"),
            {"e": deauthorized.event_id},
        ).all()
        dead_letters = connection.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar()
    assert applied == [(Status.AUTHORIZATION, Status.DEAUTHORIZED)]
    assert dead_letters == 1, "the second redrive was a duplicate, not a new refusal"
    shown = application.dead_letters.show(letter.id, scope=ALL)
    assert (shown.summary.redriven_by, shown.summary.redrive_count) == ("bob", 2)
    assert [r.requested_by for r in shown.redrives] == ["alice", "bob"]
    republished = _redrives_on(settings, settings.topic_auth, letter.id)
    assert [(key, value) for key, value, _ in republished] == [
        (b"r1", EventMessages().encode(deauthorized))
    ] * 2
    assert [headers[REDRIVEN_BY_HEADER] for *_, headers in republished] == [b"alice", b"bob"]
    application.close()
    reader.close()
    publisher.close()


def _redrives_on(settings, topic: str, dead_letter_id: int) -> list[tuple]:
    """The records on `topic` that name the dead letter in their redrive header."""
    topic_reader = TopicReader(client_config(settings), [topic], from_beginning=True)
    found: list[tuple] = []
    deadline = time.monotonic() + 10
    while len(found) < 2 and time.monotonic() < deadline:
        for record in topic_reader.poll(200):
            headers = dict(record.headers or [])
            if headers.get(REDRIVE_HEADER) == str(dead_letter_id).encode():
                found.append((record.key, record.value, headers))
    topic_reader.close()
    return found
