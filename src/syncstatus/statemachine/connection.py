"""The connection aggregate: one connection's status, its sessions, its parked events, and what
it decided.

Pure domain: it decides and records; the store loads it and persists what it recorded. The rules
(docs/engine.md) never compare two producers' clocks closer than the skew tolerance allows: order
within a session comes from the machine and from the order each topic delivers, and a producer's
own timestamps order only that producer's events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from syncstatus.statemachine.credentials import credentials_after
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import GuardContext
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.records import (
    Activity,
    MarkKey,
    Outcome,
    ParkedEvent,
    ProducerMark,
    Refusal,
    RefusalReason,
    SessionRecord,
    Transition,
    mark_key,
)
from syncstatus.statemachine.statuses import Stage, Status
from syncstatus.statemachine.table import TRANSITIONS
from syncstatus.statemachine.workspaces import DEFAULT_WORKSPACE

TIMEOUT_PRODUCER = "syncstatus.sweeper"
DELETE_PRODUCER = "syncstatus.commands"
_TIMEOUT_NAMESPACE = uuid.UUID("7d1c2f0e-5b1a-4c3e-9a57-2f6f7e0b8c11")
MAX_PRODUCER_MARKS = 64
"""Most producers whose latest event a connection remembers; the first seen is forgotten first."""


class _Placement(Enum):
    """Where an event stands against the connection's sessions."""

    CURRENT = "current"
    OPENS = "opens"
    LEFT = "left"
    AWAITS_OPENER = "awaits_opener"


@dataclass(frozen=True, slots=True)
class _Decision:
    target: Status | None = None
    applies: bool = False
    opens: bool = False
    refusal: tuple[RefusalReason, str] | None = None


_PARK = _Decision()
_ACTIVITY = _Decision(applies=True)
_APPLIES = {
    (target, opens): _Decision(target, applies=True, opens=opens)
    for target in Status
    for opens in (False, True)
}
"""Every decision to apply, made once: the hot path looks its decision up instead of making
one per event."""


@dataclass(slots=True)
class Connection:
    """One app connection of one customer, with exactly one current status and session.

    `version` is the sequence number of its last transition (0 before the first); the store
    writes a connection only if its stored version is still the one it loaded. `left_sessions`
    holds the sessions it has left that the events at hand name (the store loads no others).
    `workspace_id` is None until its first event is applied, then fixed for good.
    """

    connection_id: str
    app: str | None = None
    workspace_id: str | None = None
    status: Status | None = None
    version: int = 0
    session_id: str | None = None
    session_opened_at: datetime | None = None
    session_opened_by: str | None = None
    status_changed_at: datetime | None = None
    completed_substages: frozenset[Substage] = frozenset()
    timed_out_from: Status | None = None
    holds_credentials: bool | None = None
    deleted_at: datetime | None = None
    producer_marks: dict[MarkKey, ProducerMark] = field(default_factory=dict)
    left_sessions: set[str] = field(default_factory=set)
    parked: list[ParkedEvent] = field(default_factory=list)
    loaded_version: int = 0
    applied: list[Transition | Activity] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    newly_parked: list[ParkedEvent] = field(default_factory=list)
    unparked: list[uuid.UUID] = field(default_factory=list)
    new_sessions: list[SessionRecord] = field(default_factory=list)

    @property
    def transitions(self) -> list[Transition]:
        return [a for a in self.applied if isinstance(a, Transition)]

    @property
    def activities(self) -> list[Activity]:
        return [a for a in self.applied if isinstance(a, Activity)]

    def accept(self, event: SessionEvent, now: datetime, policy: Policy) -> Outcome:
        """Apply, park or refuse one new event, then release any parked event it unblocks."""
        self.expire_parked(now, policy)
        decision = self._decide(event, policy)
        if decision.applies:
            self._apply(event, decision, now)
            self._release_parked(now, policy)
            return Outcome.APPLIED
        if decision.refusal is None:
            parked = ParkedEvent(event, now)
            self.parked.append(parked)
            self.newly_parked.append(parked)
            return Outcome.PARKED
        self._refuse(event, *decision.refusal)
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
        return self._own_event(
            uuid.uuid5(_TIMEOUT_NAMESPACE, f"{self.connection_id}/{self.version}"),
            kind,
            now,
            TIMEOUT_PRODUCER,
            f"{self.status.label} unchanged for {limit.total_seconds():g} s",
        )

    def deletion(self, command_id: uuid.UUID, now: datetime) -> SessionEvent:
        """The event a Delete command applies: the last transition, to Disconnected."""
        return self._own_event(command_id, EventType.CONNECTION_DELETED, now, DELETE_PRODUCER)

    def _own_event(
        self,
        event_id: uuid.UUID,
        kind: EventType,
        now: datetime,
        producer: str,
        error: str | None = None,
    ) -> SessionEvent:
        return SessionEvent(
            event_id=event_id,
            type=kind,
            connection_id=self.connection_id,
            session_id=self.session_id or self.connection_id,
            app=self.app or "unknown",
            occurred_at=now,
            producer=producer,
            error=error,
            workspace_id=self.workspace_id,
        )

    def _decide(self, event: SessionEvent, policy: Policy) -> _Decision:
        """What to do with an event now: apply it (maybe opening its session), park it, or
        refuse it and why. The checks run from the most final to the least."""
        if self.deleted_at is not None:
            return _refuse(RefusalReason.CONNECTION_DELETED, "the connection was deleted")
        if self._names_another_workspace(event):
            return _refuse(
                RefusalReason.WORKSPACE_MISMATCH,
                f"the event names workspace {event.workspace_id}; the connection belongs to "
                f"{self.workspace_id}",
            )
        placement = self._place(event, policy)
        if placement is _Placement.LEFT:
            return _refuse(
                RefusalReason.SUPERSEDED_SESSION,
                f"session {event.session_id} was left; the current one is {self.session_id}",
            )
        if placement is _Placement.AWAITS_OPENER:
            return _PARK
        mark = self.producer_marks.get(mark_key(event))
        if mark is not None and mark.covers(event):
            return _refuse(
                RefusalReason.STALE,
                f"{event.producer} already reported {mark.event_type.value} at "
                f"{mark.occurred_at.isoformat()}",
            )
        if not event.type.changes_status:
            return _ACTIVITY
        if self._reauthorizes_its_own_session(event, placement):
            return _refuse(
                RefusalReason.ILLEGAL_TRANSITION,
                f"session {event.session_id} is past authorization ({self._status_text()}); "
                "a re-authorization opens a new session",
            )
        target = self._target_of(event, policy)
        if target is not None:
            return _APPLIES[target, placement is _Placement.OPENS]
        if placement is _Placement.OPENS or TRANSITIONS.may_still_apply(
            event.type, self.status, self._deduplicates(event, policy)
        ):
            return _PARK
        return _refuse(
            RefusalReason.ILLEGAL_TRANSITION,
            f"{event.type.value} is not allowed from {self._status_text()}",
        )

    def _names_another_workspace(self, event: SessionEvent) -> bool:
        """Before any other rule, and before the event may touch what the connection remembers
        of its sessions. A new connection has no workspace yet, so its early events wait; they
        are checked when released, against the workspace its first applied event fixed. An
        event that names no workspace is never a mismatch."""
        return (
            self.workspace_id is not None
            and event.workspace_id is not None
            and event.workspace_id != self.workspace_id
        )

    def _place(self, event: SessionEvent, policy: Policy) -> _Placement:
        """Which session an event belongs to, as far as this connection can tell.

        A session id the connection left is older; an unknown one is older when the event
        happened before the current session opened (by the same producer's clock, or by more
        than the clock margin on another's). Otherwise a connection-wide event applies to the
        current session, an opener opens its own, and anything else waits for its opener.
        """
        opener = event.type in TRANSITIONS.session_openers
        if self.status is None:
            return _Placement.OPENS if opener else _Placement.AWAITS_OPENER
        if event.session_id == self.session_id:
            return _Placement.CURRENT
        if event.session_id in self.left_sessions:
            return _Placement.LEFT
        if self._happened_before_the_session_opened(event, policy):
            if opener:
                self._note_left(event)
            return _Placement.LEFT
        if event.type.connection_wide:
            return _Placement.CURRENT
        return _Placement.OPENS if opener else _Placement.AWAITS_OPENER

    def _reauthorizes_its_own_session(self, event: SessionEvent, placement: _Placement) -> bool:
        """An authorization that names a session already loading came before its pipeline
        events (they overtook it) or reuses the session; either way it must not send the
        session back to Authorization."""
        return (
            event.type is EventType.AUTHORIZATION_STARTED
            and placement is _Placement.CURRENT
            and self.status is not None
            and self.status.stage is not Stage.AUTHORIZATION
        )

    def _happened_before_the_session_opened(self, event: SessionEvent, policy: Policy) -> bool:
        if self.session_opened_at is None:
            return False
        if event.producer == self.session_opened_by:
            return event.occurred_at < self.session_opened_at
        return event.occurred_at < self.session_opened_at - policy.clock_margin

    def _note_left(self, event: SessionEvent) -> None:
        self.left_sessions.add(event.session_id)
        self.new_sessions.append(
            SessionRecord(event.session_id, event.occurred_at, event.producer, None)
        )

    def _apply(self, event: SessionEvent, decision: _Decision, now: datetime) -> None:
        if self.workspace_id is None:
            self.workspace_id = event.workspace_id or DEFAULT_WORKSPACE
        if decision.opens:
            self._open_session(event)
        self._mark(event)
        if decision.target is None:
            self.applied.append(Activity(event, now))
            return
        self.version += 1
        self.applied.append(
            Transition(
                connection_id=self.connection_id,
                sequence=self.version,
                session_id=self.session_id or event.session_id,
                app=self.app or event.app,
                from_status=self.status,
                to_status=decision.target,
                event_id=event.event_id,
                event_type=event.type,
                producer=event.producer,
                occurred_at=event.occurred_at,
                recorded_at=now,
                error=event.error,
                substage=event.substage,
                attributes=event.attributes,
                failure=event.failure,
                workspace_id=self.workspace_id,
            )
        )
        if event.type is EventType.PROCESSING_STARTED:
            self.completed_substages = frozenset()
        elif event.type is EventType.PROCESSING_SUBSTAGE_COMPLETED and event.substage:
            self.completed_substages = self.completed_substages | {event.substage}
        self.timed_out_from = self.status if decision.target is Status.TIMED_OUT else None
        self.holds_credentials = credentials_after(
            self.holds_credentials, event.type, event.failure_class
        )
        if event.type is EventType.CONNECTION_DELETED:
            self.deleted_at = now
        self.app = self.app or event.app
        self.status = decision.target
        self.status_changed_at = now

    def _open_session(self, event: SessionEvent) -> None:
        if self.session_id is not None:
            self.left_sessions.add(self.session_id)
        self.session_id = event.session_id
        self.session_opened_at = event.occurred_at
        self.session_opened_by = event.producer
        self.completed_substages = frozenset()
        self.new_sessions.append(
            SessionRecord(event.session_id, event.occurred_at, event.producer, self.version + 1)
        )

    def _mark(self, event: SessionEvent) -> None:
        marks, key = self.producer_marks, mark_key(event)
        if key not in marks and len(marks) >= MAX_PRODUCER_MARKS:
            del marks[next(iter(marks))]
        marks[key] = ProducerMark(event.occurred_at, event.type, event.substage)

    def _target_of(self, event: SessionEvent, policy: Policy) -> Status | None:
        """The status the event moves this connection to now, or None if it does not apply."""
        target = TRANSITIONS.unguarded_target(self.status, event.type)
        if target is not None:
            return target
        ctx = GuardContext(
            deduplication_required=self._deduplicates(event, policy),
            completed_substages=self.completed_substages,
            timed_out_from=self.timed_out_from,
            holds_credentials=bool(self.holds_credentials),
        )
        return TRANSITIONS.decide(self.status, event.type, ctx)

    def _deduplicates(self, event: SessionEvent, policy: Policy) -> bool:
        return (self.app or event.app) in policy.deduplication_apps

    def _release_parked(self, now: datetime, policy: Policy) -> None:
        """Decide the parked events again, in the order they arrived, until none moves: each
        applies, keeps waiting, or is refused exactly as if it had arrived now."""
        progressed = True
        while progressed:
            progressed = False
            for parked in list(self.parked):
                decision = self._decide(parked.event, policy)
                if decision.refusal is not None:
                    self._unpark(parked)
                    self._refuse(parked.event, *decision.refusal)
                elif decision.applies:
                    self._unpark(parked)
                    self._apply(parked.event, decision, now)
                    progressed = True
                    break

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


def _refuse(reason: RefusalReason, detail: str) -> _Decision:
    return _Decision(refusal=(reason, detail))
