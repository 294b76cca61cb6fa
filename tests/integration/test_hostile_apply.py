"""Whatever passes decoding, the engine applies or refuses on real PostgreSQL, never fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord

from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.schemas.messages import EventMessages, MessageRejected
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Origin
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import EventFamily, EventType, SessionEvent, Substage
from syncstatus.store.uow import PostgresStore

MESSAGES = EventMessages()
NOW = datetime.now(UTC)
texts = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["'; DROP TABLE connections; --", "c1", "ünïcødé ✓", "%_\\"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from([t.value for t in EventType]),
    connection_id=st.sampled_from(["c1", "c2", "'; DROP TABLE connections; --"]),
    session_id=texts,
    app=texts,
    error=st.one_of(st.none(), texts),
    substage=st.one_of(st.none(), st.sampled_from([s.value for s in Substage])),
    attributes=st.dictionaries(texts, texts, max_size=5),
    skew_s=st.integers(min_value=-(10**9), max_value=3000),
    accounts=st.one_of(
        st.none(),
        st.lists(
            st.fixed_dictionaries({"account_id": texts, "name": texts, "status": texts}), max_size=3
        ),
    ),
)
def test_decoded_events_apply_or_are_refused(
    db_engine, kind, connection_id, session_id, app, error, substage, attributes, skew_s, accounts
):
    data = MESSAGES.codec.encode(
        {
            "event_id": uuid.uuid4(),
            "type": kind,
            "connection_id": connection_id,
            "session_id": session_id,
            "app": app,
            "occurred_at": NOW + timedelta(seconds=skew_s),
            "producer": "fuzz",
            "error": error,
            "substage": substage,
            "attributes": attributes,
            "accounts": accounts,
        }
    )
    try:
        event = MESSAGES.decode(data)
    except MessageRejected:
        return
    engine = StatusEngine(PostgresStore(db_engine), Policy())
    assert engine.apply_event(event) in set(Outcome)
    assert engine.apply_event(event) is Outcome.DUPLICATE


def _valid_message() -> bytes:
    return MESSAGES.encode(
        SessionEvent(
            event_id=uuid.uuid4(),
            type=EventType.AUTHORIZATION_STARTED,
            connection_id="c1",
            session_id="s",
            app="facebook_ads",
            occurred_at=NOW,
            producer="fuzz",
            error="boom",
            attributes={"business_account": "a@b.example"},
        )
    )


@st.composite
def message_values(draw) -> bytes | None:
    """No value at all, random bytes, or a valid message cut short and with bytes flipped."""
    kind = draw(st.sampled_from(["none", "random", "mutated"]))
    if kind == "none":
        return None
    if kind == "random":
        return draw(st.binary(max_size=300))
    mutated = bytearray(_valid_message())
    mutated = mutated[: draw(st.integers(min_value=0, max_value=len(mutated)))]
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        if mutated:
            mutated[draw(st.integers(0, len(mutated) - 1))] = draw(st.integers(0, 255))
    return bytes(mutated)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=message_values())
def test_any_message_is_stored_as_applied_or_dead_lettered(db_engine, value):
    """The consumer's own decode, then the engine on PostgreSQL: every message ends somewhere."""
    engine = StatusEngine(PostgresStore(db_engine), Policy())
    consumer = EventConsumer(
        lambda: None, engine, {"t.auth": EventFamily.AUTHORIZATION}, MESSAGES, 100
    )
    record = ConsumerRecord(
        topic="t.auth",
        partition=0,
        leader_epoch=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        headers=[],
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=-1 if value is None else len(value),
        serialized_header_size=0,
    )
    inbound, rejected = consumer.decode([record])
    with db_engine.begin() as connection:
        before = connection.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar()
    engine.apply_batch(inbound, rejected)
    with db_engine.begin() as connection:
        stored = connection.execute(
            sa.text("SELECT origin FROM dead_letters ORDER BY id DESC LIMIT 1")
        ).all()
        after = connection.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar()
    assert len(inbound) + len(rejected) == 1
    if rejected:
        assert after == before + 1
        assert Origin.from_json(stored[0].origin).value == value
