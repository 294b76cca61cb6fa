"""The service driven through Kafka only, on Tansu and embedded PostgreSQL."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from syncstatus.schemas.codec import MAGIC
from syncstatus.schemas.messages import EventMessages
from syncstatus.service.commands import CommandService
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.database import create_engine
from syncstatus.store.uow import PostgresStore

from .support import (
    OutputReader,
    gapless,
    latest_status,
    publisher_for,
    running_service,
    settings_for,
)

E = EventType

PATH: dict[Status, list[EventType]] = {
    Status.AUTHORIZATION: [E.AUTHORIZATION_STARTED],
}
PATH[Status.AUTHORIZED] = PATH[Status.AUTHORIZATION] + [E.AUTHORIZATION_SUCCEEDED]
PATH[Status.ERROR_IN_AUTHORIZATION] = PATH[Status.AUTHORIZATION] + [E.AUTHORIZATION_FAILED]
PATH[Status.AUTHORIZATION_TIMEDOUT] = PATH[Status.AUTHORIZATION] + [E.AUTHORIZATION_TIMED_OUT]
PATH[Status.DEAUTHORIZED] = PATH[Status.AUTHORIZATION] + [E.DEAUTHORIZED]
PATH[Status.DISCONNECTED] = PATH[Status.AUTHORIZATION] + [E.DISCONNECTED]
PATH[Status.LOADING] = PATH[Status.AUTHORIZED] + [E.LOADING_STARTED]
PATH[Status.WAITING_FOR_WEBHOOK] = PATH[Status.AUTHORIZED] + [E.WEBHOOK_PENDING]
PATH[Status.LOADING_ERROR] = PATH[Status.LOADING] + [E.LOADING_FAILED]
PATH[Status.LOADED] = PATH[Status.LOADING] + [E.LOADING_COMPLETED]
PATH[Status.DEDUPLICATION] = PATH[Status.LOADED] + [E.DEDUPLICATION_STARTED]
PATH[Status.DEDUPLICATION_ERROR] = PATH[Status.DEDUPLICATION] + [E.DEDUPLICATION_FAILED]
PATH[Status.STRUCTURING] = PATH[Status.LOADED] + [E.STRUCTURING_STARTED]
PATH[Status.STRUCTURING_ERROR] = PATH[Status.STRUCTURING] + [E.STRUCTURING_FAILED]
PATH[Status.STRUCTURED] = PATH[Status.STRUCTURING] + [E.STRUCTURING_COMPLETED]
PATH[Status.PROCESSING] = PATH[Status.STRUCTURED] + [E.PROCESSING_STARTED]
PATH[Status.PROCESSING_ERROR] = PATH[Status.PROCESSING] + [E.PROCESSING_FAILED]
PATH[Status.PROCESSED] = (
    PATH[Status.PROCESSING] + [E.PROCESSING_SUBSTAGE_COMPLETED] * 5 + [E.PROCESSING_COMPLETED]
)
PATH[Status.SYNCED] = PATH[Status.PROCESSED] + [E.SYNC_COMPLETED]
# After a timeout, each restart needs the session stuck at or after its stage.
STUCK_BEFORE = {
    E.DEDUPLICATION_STARTED: Status.DEDUPLICATION,
    E.STRUCTURING_STARTED: Status.STRUCTURING,
    E.PROCESSING_STARTED: Status.PROCESSING,
}
DEDUP_APP = "plaid"


@dataclass(frozen=True)
class Plan:
    """How to make one row of the table fire: reach `source`, then send `event`."""

    setup: list[tuple[EventType, str]]
    times_out: bool
    event: EventType
    source: Status | None
    target: Status
    app: str
    session: str = "s"
    """The firing event's session: a re-authorization or a new sync after one opens its own."""

    @property
    def ready_at(self) -> Status | None:
        return Status.TIMED_OUT if self.times_out else self.source


FAILED_REAUTHORIZATION = {
    Status.ERROR_IN_AUTHORIZATION: E.AUTHORIZATION_FAILED,
    Status.AUTHORIZATION_TIMEDOUT: E.AUTHORIZATION_TIMED_OUT,
}


def plan_for(event: EventType, source: Status | None, target: Status) -> Plan:
    session = "s"
    if event is E.STAGE_TIMED_OUT:
        kinds, times_out = PATH[source], True
    elif source is Status.TIMED_OUT:
        kinds, times_out = PATH[STUCK_BEFORE.get(event, Status.LOADING)], True
    elif event is E.PROCESSING_COMPLETED:
        kinds, times_out = PATH[Status.PROCESSED][:-1], False
    else:
        kinds, times_out = ([] if source is None else PATH[source]), False
    setup = [(kind, "s") for kind in kinds]
    if source in FAILED_REAUTHORIZATION and event in (E.LOADING_STARTED, E.WEBHOOK_PENDING):
        again = [E.AUTHORIZATION_STARTED, FAILED_REAUTHORIZATION[source]]
        setup = [(k, "s") for k in PATH[Status.AUTHORIZED]] + [(k, "s2") for k in again]
        session = "s3"
    elif event is E.AUTHORIZATION_STARTED and source is not None:
        session = "s2"
    dedup = E.DEDUPLICATION_STARTED in kinds or event is E.DEDUPLICATION_STARTED
    app = DEDUP_APP if dedup else "facebook_ads"
    return Plan(setup, times_out, event, source, target, app, session)


def make(kind, connection_id, app, at, substage=None, session="s") -> SessionEvent:
    return SessionEvent(
        event_id=uuid.uuid4(),
        type=kind,
        connection_id=connection_id,
        session_id=f"{connection_id}-{session}",
        app=app,
        occurred_at=at,
        producer="tests",
        substage=substage,
    )


PLANS = {
    f"row{n}": plan_for(event, source, route.target)
    for n, (event, source, route) in enumerate(TRANSITIONS.rows())
}


@pytest.mark.parametrize("times_out", [False, True], ids=["event-driven", "after-timeouts"])
def test_every_transition_of_the_table_reaches_the_status_topic(kafka, database_url, times_out):
    """Each row gets a connection: reach its source, see it on the status topic, then send
    its event (the sweeper sends STAGE_TIMED_OUT) and see the transition."""
    settings = settings_for(
        kafka,
        database_url,
        stage_timeout_s=3 if times_out else 3600,
        deduplication_apps={DEDUP_APP},
    )
    plans = {cid: plan for cid, plan in PLANS.items() if plan.times_out == times_out}
    reader, publisher = OutputReader(settings), publisher_for(settings)
    database = create_engine(database_url)
    commands = CommandService(PostgresStore(database), settings.policy())
    start = datetime.now(UTC)

    def reached(seen, cid, status) -> bool:
        return (
            status is None
            or bool(seen.changes[cid])
            and (latest_status(seen.changes[cid]) == status)
        )

    def fired(seen, cid) -> bool:
        plan = plans[cid]
        return any(
            c["cause_event_type"] == plan.event.value
            and c["to_code"] == plan.target
            and c["from_code"] == (None if plan.source is None else int(plan.source))
            for c in seen.changes[cid]
        )

    with running_service(settings):
        for cid, plan in plans.items():
            substages = iter(Substage)
            for i, (kind, session) in enumerate(plan.setup):
                sub = next(substages) if kind is E.PROCESSING_SUBSTAGE_COMPLETED else None
                at = start + timedelta(seconds=i)
                publisher.publish(make(kind, cid, plan.app, at, sub, session))
        publisher.flush()
        reader.wait_for(
            lambda seen: all(reached(seen, cid, p.ready_at) for cid, p in plans.items()),
            60,
            lambda seen: [cid for cid, p in plans.items() if not reached(seen, cid, p.ready_at)],
        )
        for cid, plan in plans.items():
            if plan.event is E.CONNECTION_DELETED:
                commands.issue(cid, CommandType.DELETE, "tests", scope=ALL)
            elif plan.event is not E.STAGE_TIMED_OUT:
                at = start + timedelta(seconds=100)
                sub = Substage.MONITORING if plan.event is E.PROCESSING_SUBSTAGE_COMPLETED else None
                publisher.publish(make(plan.event, cid, plan.app, at, sub, plan.session))
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: all(fired(seen, cid) for cid in plans),
            60,
            lambda seen: [(plans[cid], seen.changes[cid]) for cid in plans if not fired(seen, cid)],
        )
    publisher.close()
    reader.close()
    database.dispose()
    assert len(plans) == (18 if times_out else 107)
    for cid in plans:
        assert gapless(seen.changes[cid]), cid


@pytest.fixture
def settings(kafka, database_url):
    return settings_for(kafka, database_url)


def test_a_duplicate_event_yields_no_second_status_change(settings):
    reader, publisher = OutputReader(settings), publisher_for(settings)
    now = datetime.now(UTC)
    started = make(E.AUTHORIZATION_STARTED, "dup", "facebook_ads", now)
    succeeded = make(E.AUTHORIZATION_SUCCEEDED, "dup", "facebook_ads", now + timedelta(seconds=1))
    marker = make(E.DEAUTHORIZED, "dup", "facebook_ads", now + timedelta(seconds=2))
    with running_service(settings):
        for e in (started, started, succeeded, started, marker):
            publisher.publish(e)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: any(c["cause_event_id"] == marker.event_id for c in seen.changes["dup"])
        )
    assert [c["cause_event_type"] for c in seen.changes["dup"]] == [
        "AUTHORIZATION_STARTED",
        "AUTHORIZATION_SUCCEEDED",
        "DEAUTHORIZED",
    ]
    publisher.close()
    reader.close()


def test_bad_messages_are_dead_lettered_and_later_events_still_apply(settings):
    reader, publisher = OutputReader(settings), publisher_for(settings)
    raw = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    messages = EventMessages()
    now = datetime.now(UTC)
    garbage = b"\x00not avro at all"
    unknown_schema = MAGIC + struct.pack("<q", 12345) + b"\x00\x00"
    unknown_type = messages.codec.encode(
        {
            "event_id": uuid.uuid4(),
            "type": "UNKNOWN",
            "connection_id": "bad",
            "session_id": "s",
            "app": "facebook_ads",
            "occurred_at": now,
            "producer": "tests",
        }
    )
    wrong_topic = messages.encode(make(E.LOADING_STARTED, "bad", "facebook_ads", now))
    started = make(E.AUTHORIZATION_STARTED, "bad", "facebook_ads", now + timedelta(seconds=1))
    later = make(E.AUTHORIZATION_SUCCEEDED, "bad", "facebook_ads", now + timedelta(seconds=3))
    with running_service(settings):
        publisher.publish(started)
        for value in (garbage, unknown_schema, unknown_type, wrong_topic, None):
            raw.send(settings.topic_auth, key=b"bad", value=value)
        raw.flush()
        publisher.publish(later)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: (
                len(seen.dead_letters) >= 5
                and latest_status(seen.changes["bad"]) == Status.AUTHORIZED
            )
        )
    reasons = {value: headers["reason"].decode() for _, value, headers in seen.dead_letters}
    assert reasons[None] == "undecodable"  # a tombstone: no value at all
    assert reasons[garbage] == "undecodable"
    assert reasons[unknown_schema] == "unknown_schema"
    assert reasons[unknown_type] == "invalid_event"
    assert reasons[wrong_topic] == "wrong_topic"
    for key, _value, headers in seen.dead_letters:
        assert key == b"bad"
        assert headers["source_topic"] == settings.topic_auth.encode()
        assert int(headers["source_offset"]) >= 0
    raw.close()
    publisher.close()
    reader.close()


def test_an_illegal_transition_is_dead_lettered_with_its_status_and_type(settings):
    reader, publisher = OutputReader(settings), publisher_for(settings)
    now = datetime.now(UTC)
    events = [
        make(kind, "ill", "facebook_ads", now + timedelta(seconds=i))
        for i, kind in enumerate(PATH[Status.LOADED])
    ]
    illegal = make(E.LOADING_FAILED, "ill", "facebook_ads", now + timedelta(seconds=9))
    after = make(E.STRUCTURING_STARTED, "ill", "facebook_ads", now + timedelta(seconds=10))
    with running_service(settings):
        for e in events:
            publisher.publish(e)
        publisher.flush()
        reader.wait_for(
            lambda seen: seen.changes["ill"] and latest_status(seen.changes["ill"]) == Status.LOADED
        )
        for e in (illegal, after):
            publisher.publish(e)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: (
                seen.dead_letters
                and seen.changes["ill"]
                and latest_status(seen.changes["ill"]) == Status.STRUCTURING
            )
        )
    ((key, value, headers),) = seen.dead_letters
    assert headers["reason"] == b"illegal_transition"
    assert headers["from_status"] == b"12"
    assert headers["event_type"] == b"LOADING_FAILED"
    assert EventMessages().decode(value).event_id == illegal.event_id
    publisher.close()
    reader.close()


def test_events_out_of_order_across_two_topics_give_the_right_history(settings):
    reader, publisher = OutputReader(settings), publisher_for(settings)
    now = datetime.now(UTC)
    events = [
        make(
            kind,
            "ooo",
            "facebook_ads",
            now + timedelta(seconds=i),
            list(Substage)[i - 7] if kind is E.PROCESSING_SUBSTAGE_COMPLETED else None,
        )
        for i, kind in enumerate(PATH[Status.SYNCED])
    ]
    auth = [e for e in events if e.type.family.value == "authorization"]
    pipeline = [e for e in events if e not in auth]
    with running_service(settings):
        for e in pipeline:
            publisher.publish(e)
        publisher.flush()
        for e in auth:
            publisher.publish(e)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: seen.changes["ooo"] and latest_status(seen.changes["ooo"]) == Status.SYNCED
        )
    history = sorted(seen.changes["ooo"], key=lambda c: c["sequence"])
    assert [c["cause_event_id"] for c in history] == [e.event_id for e in events]
    assert gapless(history)
    publisher.close()
    reader.close()
