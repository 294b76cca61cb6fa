"""Redrives on the in-memory store: the claim-key rule (a redriven message is claimed under its
dead letter, not its event), the dry run that changes nothing, asking for redrives, and the
refusals counted per producer.

The story throughout: the authorization service was wrong. Its DEAUTHORIZED reached the
connection while it was still Disconnected (the re-authorization stamped before it was
delivered late), so it was refused as an illegal transition. Once the re-authorization is in,
redriving the dead letter applies it, once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from syncstatus.consumers.event_consumer import MessageDecoder
from syncstatus.producers.relay import dead_letter_message
from syncstatus.runtime.metrics import Metrics
from syncstatus.schemas.messages import EventMessages
from syncstatus.service.dead_letters import DeadLetterNotFound, DeadLetterTriage, NotRedrivable
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import (
    REDRIVE_HEADER,
    REDRIVEN_BY_HEADER,
    Inbound,
    Origin,
    redrive_claim,
)
from syncstatus.service.reports import BatchReport
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import EventFamily, EventType, SessionEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.outbox import DeadLetter
from tests.helpers.factories import T0, event
from tests.helpers.fake_store import FakeStore

E = EventType
NOW = T0 + timedelta(hours=1)
MESSAGES = EventMessages()
TOPICS = {"t.auth": EventFamily.AUTHORIZATION, "t.pipeline": EventFamily.PIPELINE}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def auth(kind: EventType, session: str, seconds: int) -> SessionEvent:
    return event(kind, "c1", session, at=at(seconds), producer="auth")


def message(e: SessionEvent, offset: int, headers: tuple = ()) -> Origin:
    return Origin("t.auth", 0, offset, b"c1", MESSAGES.encode(e), headers)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def engine(store: FakeStore) -> StatusEngine:
    return StatusEngine(store, Policy(), clock=lambda: NOW)


@pytest.fixture
def triage(store: FakeStore, engine: StatusEngine) -> DeadLetterTriage:
    return DeadLetterTriage(store, engine, MessageDecoder(MESSAGES, TOPICS), TOPICS, lambda: NOW)


@pytest.fixture
def refused(engine: StatusEngine, store: FakeStore) -> tuple[SessionEvent, Origin]:
    """Dead letter 1: the DEAUTHORIZED refused while the connection was Disconnected."""
    for e in (
        auth(E.AUTHORIZATION_STARTED, "s1", 1),
        auth(E.AUTHORIZATION_SUCCEEDED, "s1", 2),
        auth(E.DISCONNECTED, "s1", 3),
    ):
        assert engine.apply_event(e) is Outcome.APPLIED
    deauthorized = auth(E.DEAUTHORIZED, "revocation", 5)
    origin = message(deauthorized, 4, (("trace", b"t-1"),))
    assert engine.apply_event(deauthorized, origin) is Outcome.REFUSED
    (letter,) = store.dead_letters()
    assert (letter.id, letter.reason, letter.producer) == (1, "illegal_transition", "auth")
    return deauthorized, origin


def reauthorize(engine: StatusEngine) -> None:
    """The late re-authorization: Disconnected -> Authorization, in a new session."""
    assert engine.apply_event(auth(E.AUTHORIZATION_STARTED, "s2", 4)) is Outcome.APPLIED


def deauthorizations(store: FakeStore) -> list[tuple[Status | None, Status]]:
    return [
        (t.from_status, t.to_status) for t in store.history("c1") if t.event_type is E.DEAUTHORIZED
    ]


def test_a_redrive_is_claimed_under_its_dead_letter_so_it_applies_once(
    engine, store, triage, refused
):
    deauthorized, origin = refused
    reauthorize(engine)
    assert engine.apply_event(deauthorized, origin) is Outcome.DUPLICATE, "same id, same claim"
    triage.redrive([1], "alice", scope=ALL)
    redriven = Inbound(deauthorized, origin.redriven(1, "alice"))
    assert redriven.redrive_of == 1
    assert engine.apply_batch([redriven, redriven]).outcomes == [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
    ]
    assert engine.apply_batch([redriven]).outcomes == [Outcome.DUPLICATE], "published twice"
    assert deauthorizations(store) == [(Status.AUTHORIZATION, Status.DEAUTHORIZED)]
    assert store.tables.processed >= {deauthorized.event_id, redrive_claim(1)}


def test_a_redrive_refused_again_is_a_new_dead_letter_that_can_be_redriven(
    engine, store, triage, refused
):
    deauthorized, origin = refused
    triage.redrive([1], "alice", scope=ALL)
    first = Inbound(deauthorized, origin.redriven(1, "alice"))
    assert engine.apply_batch([first]).outcomes == [Outcome.REFUSED], "still Disconnected"
    second = store.dead_letters()[1]
    assert (second.id, second.reason) == (2, "illegal_transition")
    assert second.event_id == deauthorized.event_id
    assert second.origin.redrive_of == 1
    assert ("trace", b"t-1") in second.origin.headers, "the producer's headers are kept"
    reauthorize(engine)
    assert engine.apply_batch([first]).outcomes == [Outcome.DUPLICATE], "1 was taken"
    triage.redrive([2], "alice", scope=ALL)
    again = Inbound(deauthorized, second.origin.redriven(2, "alice"))
    assert engine.apply_batch([again]).outcomes == [Outcome.APPLIED]
    assert deauthorizations(store) == [(Status.AUTHORIZATION, Status.DEAUTHORIZED)]


def test_a_redrive_header_nobody_asked_for_buys_no_second_application(
    engine, store, triage, refused
):
    """Any producer can write the header: only a redrive the store vouches for (asked for,
    of this very event) is claimed under its dead letter."""
    deauthorized, origin = refused
    reauthorize(engine)
    forged = Inbound(deauthorized, origin.redriven(1, "mallory"))
    assert engine.apply_batch([forged]).outcomes == [Outcome.DUPLICATE], "not asked for"
    other = auth(E.AUTHORIZATION_SUCCEEDED, "s2", 6)
    assert engine.apply_event(other) is Outcome.APPLIED
    triage.redrive([1], "alice", scope=ALL)
    wrong_event = Inbound(other, origin.redriven(1, "mallory"))
    assert engine.apply_batch([wrong_event]).outcomes == [Outcome.DUPLICATE], "not its event"
    assert redrive_claim(1) not in store.tables.processed
    assert deauthorizations(store) == []


def test_the_redrive_headers_name_only_the_latest_redrive():
    original = Origin("t.auth", 1, 7, b"k", b"v", (("trace", b"t"), (REDRIVE_HEADER, b"3")))
    assert original.redrive_of == 3
    redriven = original.redriven(9, "bob")
    assert redriven.headers == (
        ("trace", b"t"),
        (REDRIVE_HEADER, b"9"),
        (REDRIVEN_BY_HEADER, b"bob"),
    )
    assert (redriven.topic, redriven.key, redriven.value) == ("t.auth", b"k", b"v")
    assert Origin.from_json(redriven.to_json()) == redriven
    not_a_number = Origin("t.auth", 1, 7, b"k", b"v", ((REDRIVE_HEADER, b"x1"),))
    assert not_a_number.redrive_of is None
    stored_before_headers = {k: v for k, v in original.to_json().items() if k != "headers"}
    assert Origin.from_json(stored_before_headers).headers == ()


def test_a_dry_run_says_what_a_redrive_would_do_and_keeps_nothing(engine, store, triage, refused):
    verdict = triage.dry_run(1, scope=ALL)
    assert (verdict.outcome, verdict.reason, verdict.from_status) == (
        Outcome.REFUSED,
        "illegal_transition",
        Status.DISCONNECTED,
    )
    reauthorize(engine)
    before = (set(store.tables.processed), list(store.history()), store.dead_letters())
    verdict = triage.dry_run(1, scope=ALL)
    assert (verdict.outcome, verdict.from_status, verdict.to_status) == (
        Outcome.APPLIED,
        Status.AUTHORIZATION,
        Status.DEAUTHORIZED,
    )
    assert (set(store.tables.processed), list(store.history()), store.dead_letters()) == before
    deauthorized, origin = refused
    triage.redrive([1], "alice", scope=ALL)
    engine.apply_batch([Inbound(deauthorized, origin.redriven(1, "alice"))])
    assert triage.dry_run(1, scope=ALL).outcome is Outcome.DUPLICATE
    with pytest.raises(DeadLetterNotFound):
        triage.dry_run(99, scope=ALL)


def test_a_dry_run_of_a_message_that_never_decoded_is_refused_again(engine, store, triage):
    garbage = Origin("t.auth", 0, 1, b"c1", b"\x00not avro")
    engine.apply_batch([], [MessageDecoder(MESSAGES, TOPICS)(garbage)])
    verdict = triage.dry_run(1, scope=ALL)
    assert (verdict.outcome, verdict.reason) == (Outcome.REFUSED, "undecodable")


def test_a_dry_run_of_an_early_event_says_it_would_park(engine, store, triage):
    early = event(E.LOADING_COMPLETED, "c2", "s1", at=at(9), producer="pipeline")
    letter = Origin("t.pipeline", 0, 1, b"c2", MESSAGES.encode(early))
    engine.apply_batch([], [MessageDecoder(MESSAGES, {})(letter)])  # wrong topic then
    verdict = triage.dry_run(1, scope=ALL)
    assert verdict.outcome is Outcome.PARKED and "60 s" in verdict.detail


def test_redrives_are_recorded_and_those_without_a_message_refused(engine, store, triage, refused):
    engine.apply_event(event(E.LOADING_STARTED, "c3"))  # parks, applied without a message
    engine.clock = lambda: NOW + timedelta(minutes=5)
    engine.sweep()
    gone = Origin("t.renamed", 0, 1, b"c4", b"\x00")
    engine.apply_batch([], [MessageDecoder(MESSAGES, TOPICS)(gone)])
    assert [d.reason for d in store.dead_letters()] == [
        "illegal_transition",
        "parked_too_long",
        "undecodable",
    ]
    report = triage.redrive([1, 2, 1, 3], "alice", scope=ALL)
    assert report.requested == [1]
    assert report.refused == {
        2: "it has no message: the service raised the event itself",
        3: "t.renamed is not an input topic now",
    }
    assert [(r.dead_letter_id, r.requested_by, r.requested_at) for r in store.redrives()] == [
        (1, "alice", NOW)
    ]
    letter = store.dead_letters()[0]
    assert (letter.redriven_by, letter.redriven_at, letter.redrive_count) == ("alice", NOW, 1)
    with pytest.raises(DeadLetterNotFound):
        triage.redrive([1, 42], "alice", scope=ALL)
    assert len(store.redrives()) == 1, "nothing queued when one id names no dead letter"
    with pytest.raises(NotRedrivable):
        triage.dry_run(2, scope=ALL)


def test_refusals_are_counted_per_producer_and_reason(engine, store, refused):
    metrics = Metrics()
    reauthorize(engine)
    stale = engine.apply_batch([Inbound(auth(E.AUTHORIZATION_STARTED, "s0", 0))])
    rejected = [(None, "undecodable"), ("auth", "wrong_topic")]
    metrics.record_batch(BatchReport([], rejected, stale, 0))

    def counted(producer: str, reason: str) -> float | None:
        labels = {"producer": producer, "reason": reason}
        return metrics.registry.get_sample_value("syncstatus_refusals_total", labels)

    assert counted("unknown", "undecodable") == 1.0
    assert counted("auth", "wrong_topic") == 1.0
    assert counted("auth", stale.refusals[0].reason.value) == 1.0


def test_a_redrive_refused_again_names_the_dead_letter_it_redrove_on_the_topic(refused):
    deauthorized, origin = refused
    again = DeadLetter(
        2, "illegal_transition", "still", "c1", "DEAUTHORIZED", 26, deauthorized,
        origin.redriven(1, "alice"),
    )  # fmt: skip
    message = dead_letter_message(MESSAGES)(again)
    assert ("redrive_of", b"1") in message.headers
    assert (message.key, message.value) == (origin.key, origin.value)
    first = replace(again, origin=origin)
    assert "redrive_of" not in dict(dead_letter_message(MESSAGES)(first).headers)
