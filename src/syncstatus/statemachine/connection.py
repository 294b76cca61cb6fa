"""The connection aggregate: one connection's status, its parked events, and what it decided.

Pure domain: it decides and records; the store loads it and persists what it recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import GuardContext
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS

TIMEOUT_PRODUCER = "syncstatus.sweeper"
_TIMEOUT_NAMESPACE = uuid.UUID("7d1c2f0e-5b1a-4c3e-9a57-2f6f7e0b8c11")


class RefusalReason(Enum):
    """Why a message or event was not applied; the dead-letter topic carries it as a header."""

    UNDECODABLE = "undecodable"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID_EVENT = "invalid_event"
    WRONG_TOPIC = "wrong_topic"
    ILLEGAL_TRANSITION = "illegal_transition"
    STALE = "stale"
    PARKED_TOO_LONG = "parked_too_long"
    UNPROCESSABLE = "unprocessable"


class Outcome(Enum):
    APPLIED = "applied"
    PARKED = "parked"
    REFUSED = "refused"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules' settings: which apps deduplicate, how long to wait, when a stage times out."""

    deduplication_apps: frozenset[str] = frozenset()
    park_window: timedelta = timedelta(seconds=60)
    authorization_timeout: timedelta = timedelta(minutes=15)
    stage_timeout: timedelta = timedelta(hours=6)
    stage_timeouts: Mapping[Status, timedelta] = field(default_factory=dict)

    def timeout_for(self, status: Status) -> timedelta | None:
        if status is Status.AUTHORIZATION:
            return self.authorization_timeout
        if status in TIMEOUT_STATUSES:
            return self.stage_timeouts.get(status, self.stage_timeout)
        return None


TIMEOUT_STATUSES = frozenset(TRANSITIONS.sources_of(EventType.STAGE_TIMED_OUT))


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


@dataclass(slots=True)
class Connection:
    """One app connection of one customer, with exactly one current status.

    `version` is the sequence number of its last transition (0 before the first); the store
    writes a connection only if its stored version is still the one it loaded.
    """

    connection_id: str
    app: str | None = None
    status: Status | None = None
    version: int = 0
    session_id: str | None = None
    last_occurred_at: datetime | None = None
    status_changed_at: datetime | None = None
    completed_substages: frozenset[Substage] = frozenset()
    timed_out_from: Status | None = None
    parked: list[ParkedEvent] = field(default_factory=list)
    loaded_version: int = 0
    transitions: list[Transition] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    newly_parked: list[ParkedEvent] = field(default_factory=list)
    unparked: list[uuid.UUID] = field(default_factory=list)

    def accept(self, event: SessionEvent, now: datetime, policy: Policy) -> Outcome:
        """Apply, park or refuse one new event, then release any parked event it unblocks."""
        self.expire_parked(now, policy)
        if self._try_apply(event, now, policy):
            self._release_parked(now, policy)
            return Outcome.APPLIED
        refusal = self._refusal_for_inapplicable(event, policy)
        if refusal is None:
            parked = ParkedEvent(event, now)
            self.parked.append(parked)
            self.newly_parked.append(parked)
            return Outcome.PARKED
        self._refuse(event, *refusal)
        return Outcome.REFUSED

    def expire_parked(self, now: datetime, policy: Policy) -> None:
        for parked in [p for p in self.parked if now - p.parked_at > policy.park_window]:
            self._unpark(parked)
            self._refuse(
                parked.event,
                RefusalReason.PARKED_TOO_LONG,
                f"{parked.event.type.value} never became applicable within "
                f"{policy.park_window.total_seconds():g} s; last status {self._status_text()}",
            )

    def due_timeout(self, now: datetime, policy: Policy) -> SessionEvent | None:
        """The timeout event the service's clock raises now, if the status stayed too long."""
        if self.status is None or self.status_changed_at is None:
            return None
        limit = policy.timeout_for(self.status)
        if limit is None or now - self.status_changed_at < limit:
            return None
        kind = (
            EventType.AUTHORIZATION_TIMED_OUT
            if self.status is Status.AUTHORIZATION
            else EventType.STAGE_TIMED_OUT
        )
        return SessionEvent(
            event_id=uuid.uuid5(_TIMEOUT_NAMESPACE, f"{self.connection_id}/{self.version}"),
            type=kind,
            connection_id=self.connection_id,
            session_id=self.session_id or self.connection_id,
            app=self.app or "unknown",
            occurred_at=now,
            producer=TIMEOUT_PRODUCER,
            error=f"{self.status.label} unchanged for {limit.total_seconds():g} s",
        )

    def _try_apply(self, event: SessionEvent, now: datetime, policy: Policy) -> bool:
        if not event.type.changes_status:
            if self.status is None:
                return False
            self.activities.append(Activity(event, now))
            return True
        target = self._target_of(event, policy)
        if target is None:
            return False
        self.version += 1
        self.transitions.append(
            Transition(
                connection_id=self.connection_id,
                sequence=self.version,
                session_id=event.session_id,
                app=self.app or event.app,
                from_status=self.status,
                to_status=target,
                event_id=event.event_id,
                event_type=event.type,
                producer=event.producer,
                occurred_at=event.occurred_at,
                recorded_at=now,
                error=event.error,
                substage=event.substage,
                attributes=event.attributes,
            )
        )
        if event.type is EventType.PROCESSING_STARTED:
            self.completed_substages = frozenset()
        elif event.type is EventType.PROCESSING_SUBSTAGE_COMPLETED and event.substage:
            self.completed_substages = self.completed_substages | {event.substage}
        self.timed_out_from = self.status if target is Status.TIMED_OUT else None
        self.app = self.app or event.app
        self.status = target
        self.session_id = event.session_id
        self.status_changed_at = now
        if self.last_occurred_at is None or event.occurred_at > self.last_occurred_at:
            self.last_occurred_at = event.occurred_at
        return True

    def _target_of(self, event: SessionEvent, policy: Policy) -> Status | None:
        """The status the event moves this connection to now, or None if it does not apply."""
        ctx = GuardContext(
            deduplication_required=self._deduplicates(event, policy),
            completed_substages=self.completed_substages,
            timed_out_from=self.timed_out_from,
        )
        return TRANSITIONS.decide(self.status, event.type, ctx)

    def _refusal_for_inapplicable(
        self, event: SessionEvent, policy: Policy
    ) -> tuple[RefusalReason, str] | None:
        """Why an event that does not apply now never will; None if it may still apply.

        An older event than the last transition is stale. A newer one may wait for the events
        before it: one of another session waits for that session to start here, one of the
        current session waits only if the session can still reach a status it applies from.
        """
        if self._is_stale(event):
            return RefusalReason.STALE, "older than the connection's last transition"
        if self.status is None or event.session_id != self.session_id:
            return None
        if TRANSITIONS.may_still_apply(event.type, self.status, self._deduplicates(event, policy)):
            return None
        return (
            RefusalReason.ILLEGAL_TRANSITION,
            f"{event.type.value} is not allowed from {self._status_text()}",
        )

    def _deduplicates(self, event: SessionEvent, policy: Policy) -> bool:
        return (self.app or event.app) in policy.deduplication_apps

    def _is_stale(self, event: SessionEvent) -> bool:
        """A status change that happened before the latest one; activities never are."""
        return (
            event.type.changes_status
            and self.last_occurred_at is not None
            and event.occurred_at < self.last_occurred_at
        )

    def _release_parked(self, now: datetime, policy: Policy) -> None:
        """Apply what the new status unblocked, earliest first; then refuse what can no
        longer apply, exactly as if it had arrived now. One that happened before the latest
        transition is stale, even if it would apply: a retry parked at Loading must not
        follow a failure that happened after it."""
        progressed = True
        while progressed:
            progressed = False
            for parked in sorted(self.parked, key=lambda p: p.event.occurred_at):
                if self._is_stale(parked.event):
                    continue
                if self._try_apply(parked.event, now, policy):
                    self._unpark(parked)
                    progressed = True
                    break
        for parked in list(self.parked):
            refusal = self._refusal_for_inapplicable(parked.event, policy)
            if refusal is not None:
                self._unpark(parked)
                self._refuse(parked.event, *refusal)

    def _unpark(self, parked: ParkedEvent) -> None:
        self.parked.remove(parked)
        if parked in self.newly_parked:
            self.newly_parked.remove(parked)
        else:
            self.unparked.append(parked.event.event_id)

    def _refuse(self, event: SessionEvent, reason: RefusalReason, detail: str) -> None:
        self.refusals.append(Refusal(event, reason, detail, self.status))

    def _status_text(self) -> str:
        if self.status is None:
            return "a new connection"
        return f"{int(self.status)} {self.status.label}"
