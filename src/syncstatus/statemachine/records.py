"""What the connection aggregate decides (transitions, activities, refusals, parked events)
and what it remembers between batches (producer marks, sessions it has known)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from syncstatus.statemachine.events import (
    EventType,
    Failure,
    FailureClass,
    SessionEvent,
    Substage,
    failure_class_of,
)
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import DEFAULT_WORKSPACE


class RefusalReason(Enum):
    """Why a message or event was not applied; the dead-letter topic carries it as a header."""

    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID_EVENT = "invalid_event"
    WRONG_TOPIC = "wrong_topic"
    ILLEGAL_TRANSITION = "illegal_transition"
    STALE = "stale"
    SUPERSEDED_SESSION = "superseded_session"
    CONNECTION_DELETED = "connection_deleted"
    PARKED_TOO_LONG = "parked_too_long"
    UNPROCESSABLE = "unprocessable"
    WORKSPACE_MISMATCH = "workspace_mismatch"


class Outcome(Enum):
    APPLIED = "applied"
    PARKED = "parked"
    REFUSED = "refused"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Transition:
    """One applied transition: a history row and the status-change record published for it."""

    connection_id: str
    sequence: int
    session_id: str
    app: str
    from_status: Status | None
    to_status: Status
    event_id: uuid.UUID
    event_type: EventType
    producer: str
    occurred_at: datetime
    recorded_at: datetime
    error: str | None
    substage: Substage | None
    attributes: Mapping[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    workspace_id: str = DEFAULT_WORKSPACE
    """The connection's workspace (whatever the event named: a mismatch is never applied)."""

    @property
    def failure_class(self) -> FailureClass | None:
        return failure_class_of(self.failure, self.error)


@dataclass(frozen=True, slots=True)
class Activity:
    """An applied event that changes what people see of a connection but not its status."""

    event: SessionEvent
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event that will never be applied, and why; it is kept and dead-lettered."""

    event: SessionEvent
    reason: RefusalReason
    detail: str
    from_status: Status | None


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    event: SessionEvent
    parked_at: datetime


@dataclass(frozen=True, slots=True)
class ProducerMark:
    """The latest event of one producer that a connection applied."""

    occurred_at: datetime
    event_type: EventType
    substage: Substage | None = None

    def covers(self, event: SessionEvent) -> bool:
        """The producer reported `event` before this one, or this one already: a retry with a
        new id or a replay. A producer's own clock orders its own events; its status changes
        and its account events are marked apart, as different facts."""
        if event.occurred_at != self.occurred_at:
            return event.occurred_at < self.occurred_at
        return (event.type, event.substage) == (self.event_type, self.substage)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session a connection has known: opened by its first transition (`sequence`), or seen
    once and judged older than the current one (`sequence` None)."""

    session_id: str
    opened_at: datetime
    opened_by: str
    sequence: int | None


MarkKey = tuple[str, bool]
"""A producer, and whether the mark is of its status changes (True) or its account events."""


def mark_key(event: SessionEvent) -> MarkKey:
    return event.producer, event.type.changes_status
