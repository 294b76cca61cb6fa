"""Interleaved streams of whole sessions: what the tests and the benchmarks feed the engine
(the benchmarks import it from here; the tests import nothing from bench/)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from syncstatus.statemachine.events import EventType, SessionEvent, Substage

E = EventType
FLOW = [
    E.AUTHORIZATION_STARTED,
    E.AUTHORIZATION_SUCCEEDED,
    E.LOADING_STARTED,
    E.LOADING_COMPLETED,
    E.STRUCTURING_STARTED,
    E.STRUCTURING_COMPLETED,
    E.PROCESSING_STARTED,
    *[E.PROCESSING_SUBSTAGE_COMPLETED] * len(Substage),
    E.PROCESSING_COMPLETED,
    E.SYNC_COMPLETED,
]
"""Authorization to Synced: the 14 transitions of a session that goes well."""
_FIRST_SUBSTAGE = FLOW.index(E.PROCESSING_SUBSTAGE_COMPLETED)


def stream(
    connections: int,
    prefix: str = "conn",
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    producer: str = "tests",
) -> list[SessionEvent]:
    """Authorization → Synced for every connection, step k of every connection before step
    k+1 of any: maximal interleaving."""
    substages = list(Substage)
    return [
        SessionEvent(
            event_id=uuid.uuid4(),
            type=kind,
            connection_id=f"{prefix}-{c}",
            session_id=f"{prefix}-session-{c}",
            app="facebook_ads",
            occurred_at=start + timedelta(seconds=step),
            producer=producer,
            substage=substages[step - _FIRST_SUBSTAGE]
            if kind is E.PROCESSING_SUBSTAGE_COMPLETED
            else None,
        )
        for step, kind in enumerate(FLOW)
        for c in range(connections)
    ]
