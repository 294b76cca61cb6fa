"""Whatever passes decoding, the engine applies or refuses on real PostgreSQL, never fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncstatus.engine import StatusEngine
from syncstatus.messages import EventMessages, MessageRejected
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import EventType, Substage
from syncstatus.store.postgres import PostgresStore

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
