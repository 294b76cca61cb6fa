"""Builders of well-formed events for the tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from syncstatus.statemachine.events import Account, EventType, SessionEvent, Substage

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_tick = itertools.count(1)


def event(
    kind: EventType,
    connection_id: str = "conn-1",
    session_id: str = "s-1",
    *,
    at: datetime | None = None,
    app: str = "facebook_ads",
    substage: Substage | None = None,
    error: str | None = None,
    accounts: tuple[Account, ...] | None = None,
    attributes: dict[str, str] | None = None,
    producer: str = "tests",
    workspace_id: str | None = None,
) -> SessionEvent:
    """An event; without `at`, each new event occurs one second after the previous one."""
    return SessionEvent(
        event_id=uuid.uuid4(),
        type=kind,
        connection_id=connection_id,
        session_id=session_id,
        app=app,
        occurred_at=at or T0 + timedelta(seconds=next(_tick)),
        producer=producer,
        error=error,
        substage=substage,
        accounts=accounts,
        attributes=attributes or {},
        workspace_id=workspace_id,
    )


def happy_session(
    connection_id: str = "conn-1",
    session_id: str = "s-1",
    app: str = "facebook_ads",
    dedup: bool = False,
) -> list[SessionEvent]:
    """Authorization to Synced, every step in order."""
    E = EventType
    kinds = [
        E.AUTHORIZATION_STARTED,
        E.AUTHORIZATION_SUCCEEDED,
        E.LOADING_STARTED,
        E.LOADING_COMPLETED,
    ]
    if dedup:
        kinds.append(E.DEDUPLICATION_STARTED)
    kinds += [E.STRUCTURING_STARTED, E.STRUCTURING_COMPLETED, E.PROCESSING_STARTED]
    events = [event(k, connection_id, session_id, app=app) for k in kinds]
    events += [
        event(E.PROCESSING_SUBSTAGE_COMPLETED, connection_id, session_id, app=app, substage=s)
        for s in Substage
    ]
    events += [
        event(k, connection_id, session_id, app=app)
        for k in (E.PROCESSING_COMPLETED, E.SYNC_COMPLETED)
    ]
    return events
