"""Hostile input: whatever bytes arrive, decoding ends in an event within the limits or in a
refusal with a reason; nothing else escapes."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord

from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.schemas.messages import EventMessages, MessageRejected
from syncstatus.service.engine import BatchResult
from syncstatus.statemachine.connection import Outcome, RefusalReason
from syncstatus.statemachine.events import EventFamily, EventLimits, EventType
from tests.helpers.examples import examples
from tests.helpers.factories import event

MESSAGES = EventMessages()
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SQL = ["'; DROP TABLE connections; --", '" OR 1=1 --', "$$; SELECT pg_sleep(10); $$"]


def record(**overrides):
    return {
        "event_id": uuid.uuid4(),
        "type": "AUTHORIZATION_STARTED",
        "connection_id": "c",
        "session_id": "s",
        "app": "facebook_ads",
        "occurred_at": NOW,
        "producer": "p",
        "error": None,
        "substage": None,
        "attributes": {},
        "accounts": None,
    } | overrides


def decode(data: bytes):
    try:
        return MESSAGES.decode(data, NOW)
    except MessageRejected as refusal:
        return refusal


@given(st.binary(max_size=2000))
def test_random_bytes_are_refused_with_a_reason(data):
    outcome = decode(data)
    assert isinstance(outcome, MessageRejected)
    assert outcome.reason in (RefusalReason.UNDECODABLE, RefusalReason.UNKNOWN_SCHEMA)


@given(st.data())
def test_corrupted_valid_messages_never_escape(data):
    valid = MESSAGES.codec.encode(record(error="boom", attributes={"a": "b"}))
    cut = data.draw(st.integers(min_value=0, max_value=len(valid)))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), max_size=4)
    )
    mutated = bytearray(valid[:cut] if data.draw(st.booleans()) else valid)
    for index, value in flips:
        if index < len(mutated):
            mutated[index] = value
    outcome = decode(bytes(mutated))
    assert isinstance(outcome, MessageRejected) or outcome.event_id is not None


texts = st.one_of(
    st.text(max_size=300),
    st.sampled_from(SQL),
    st.just("x" * 5000),
    st.just("nul\x00byte"),
    st.just(""),
)


@settings(max_examples=examples(200))
@given(
    connection_id=texts,
    app=texts,
    error=st.one_of(st.none(), texts),
    attributes=st.dictionaries(texts, texts, max_size=80),
    skew=st.integers(min_value=-(10**7), max_value=10**7),
)
def test_any_field_contents_are_applied_or_refused_as_invalid(
    connection_id, app, error, attributes, skew
):
    limits = EventLimits()
    data = MESSAGES.codec.encode(
        record(
            connection_id=connection_id,
            app=app,
            error=error,
            attributes=attributes,
            occurred_at=NOW + timedelta(seconds=skew),
        )
    )
    outcome = decode(data)
    if isinstance(outcome, MessageRejected):
        assert outcome.reason is RefusalReason.INVALID_EVENT, outcome
        return
    assert 0 < len(outcome.connection_id) <= limits.max_id_length
    assert "\x00" not in outcome.connection_id + outcome.app + (outcome.error or "")
    assert len(outcome.attributes) <= limits.max_attributes
    assert outcome.occurred_at - NOW <= limits.max_clock_skew


def test_oversized_messages_are_refused_unread():
    limits = EventLimits(max_message_bytes=100)
    big = EventMessages(limits).codec.encode(record(error="x" * 200))
    with pytest.raises(MessageRejected, match="at most 100"):
        EventMessages(limits).decode(big, NOW)


def test_far_future_and_far_past_timestamps():
    with pytest.raises(MessageRejected, match="in the future"):
        MESSAGES.decode(MESSAGES.codec.encode(record(occurred_at=NOW + timedelta(days=3650))), NOW)
    with pytest.raises(MessageRejected, match="before 2000-01-01"):
        MESSAGES.decode(
            MESSAGES.codec.encode(record(occurred_at=datetime(1971, 1, 1, tzinfo=UTC))), NOW
        )
    old = MESSAGES.decode(
        MESSAGES.codec.encode(record(occurred_at=datetime(2001, 1, 1, tzinfo=UTC))), NOW
    )
    assert old.occurred_at.year == 2001  # decodes; the engine judges it (stale or parked)


def test_non_utf8_strings_are_undecodable():
    valid = MESSAGES.codec.encode(record(connection_id="abc"))
    broken = valid.replace(b"abc", b"\xff\xfe\xfd")
    assert decode(broken).reason is RefusalReason.UNDECODABLE


class PoisonedEngine:
    """Applies batches but cannot take one event: like a bug only one input triggers."""

    def __init__(self, poison: uuid.UUID) -> None:
        self.poison = poison
        self.applied: list = []
        self.rejected: list = []

    def apply_batch(self, items, rejected=()):
        if any(i.event.event_id == self.poison for i in items):
            raise RuntimeError("cannot take this one")
        self.applied += items
        self.rejected += rejected
        return BatchResult(outcomes=[Outcome.APPLIED] * len(items))


def test_one_event_the_engine_cannot_take_is_dead_lettered_and_the_rest_apply():
    events = [event(EventType.AUTHORIZATION_STARTED, f"c{i}") for i in range(3)]
    engine = PoisonedEngine(events[1].event_id)
    consumer = EventConsumer(
        lambda: None, engine, {"auth": EventFamily.AUTHORIZATION}, MESSAGES, 100
    )
    records = [
        ConsumerRecord(
            topic="auth",
            partition=0,
            leader_epoch=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=b"k",
            value=MESSAGES.encode(e),
            headers=[],
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=1,
            serialized_header_size=0,
        )
        for offset, e in enumerate(events)
    ]
    assert consumer._apply_until_done(records, threading.Event()) is True
    assert [i.event for i in engine.applied] == [events[0], events[2]]
    (poisoned,) = engine.rejected
    assert poisoned.reason == "unprocessable" and "cannot take this one" in poisoned.detail
    assert poisoned.origin.offset == 1 and poisoned.origin.value == records[1].value
