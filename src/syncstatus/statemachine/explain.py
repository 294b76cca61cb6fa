"""Why a connection is where it is: what can move it, when the clock will, what waits, what was
refused, and whether its data can be read.

Every part is derived from the machine's table, the policy and the stored facts, so the answer
for a status is the one the engine would act on, never a text written for that status.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncstatus.statemachine.connection import Connection
from syncstatus.statemachine.events import EventFamily, EventType, Substage
from syncstatus.statemachine.machine import GuardContext
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.records import ParkedEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS
from syncstatus.statemachine.view import ConnectionView, can_extract


@dataclass(frozen=True, slots=True)
class WaitingFor:
    """An event the machine would apply now, the family (so the topic) it arrives on, and the
    producer that last sent an event of that family to this connection (None: none yet)."""

    event_type: EventType
    family: EventFamily
    target: Status
    connection_wide: bool
    last_producer: str | None


@dataclass(frozen=True, slots=True)
class Blocked:
    """A route declared from this status that a guard refuses now."""

    event_type: EventType
    target: Status
    guard: str
    for_good: bool
    """A guard of the app alone refuses it (deduplication), so it never will for this app."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """The event the service's clock raises when the status has lasted its timeout."""

    event_type: EventType
    at: datetime
    remaining_s: float


@dataclass(frozen=True, slots=True)
class ParkedLine:
    event_id: uuid.UUID
    event_type: EventType
    session_id: str
    parked_at: datetime
    age_s: float
    window_left_s: float


@dataclass(frozen=True, slots=True)
class RefusalLine:
    """One dead letter of this connection, as the store keeps it."""

    reason: str
    detail: str
    event_type: str | None
    event_id: uuid.UUID | None
    refused_at: datetime


@dataclass(frozen=True, slots=True)
class Explanation:
    connection_id: str
    status: Status
    since: datetime
    waiting_for: list[WaitingFor]
    blocked: list[Blocked]
    substages_left: list[Substage]
    deadline: Deadline | None
    parked: list[ParkedLine]
    refusals: list[RefusalLine]
    can_extract: bool
    why_not: list[str]


def explain(
    connection: Connection,
    view: ConnectionView,
    refusals: Sequence[RefusalLine],
    policy: Policy,
    now: datetime,
    applied_by: Sequence[tuple[EventType, str]] = (),
) -> Explanation:
    """The explanation of a stored connection (status set) at `now`; `applied_by` is the
    (event type, producer) of its transitions in the order they applied, any subset that keeps
    the latest of each family."""
    status, since = connection.status, connection.status_changed_at
    if status is None or since is None:
        raise ValueError(f"connection {connection.connection_id} has no status yet")
    waiting, blocked = _routes_now(connection, policy, last_producers(connection, applied_by))
    accepts_substages = any(
        w.event_type is EventType.PROCESSING_SUBSTAGE_COMPLETED for w in waiting
    )
    return Explanation(
        connection_id=connection.connection_id,
        status=status,
        since=since,
        waiting_for=waiting,
        blocked=blocked,
        substages_left=[s for s in Substage if s not in connection.completed_substages]
        if accepts_substages
        else [],
        deadline=_deadline(connection, policy, now),
        parked=[_parked_line(p, policy, now) for p in connection.parked],
        refusals=list(refusals),
        can_extract=can_extract(view.credentials_valid, view.active_accounts, view.deleted_at),
        why_not=_why_not(view),
    )


def _routes_now(
    connection: Connection, policy: Policy, producers: Mapping[EventFamily, str]
) -> tuple[list[WaitingFor], list[Blocked]]:
    """Every declared route from the status, split by whether its guards pass now. Events only
    syncstatus raises (the sweeper's timeout, a Delete command) come in by no topic; the
    deadline and the commands cover them."""
    dedup = connection.app in policy.deduplication_apps
    ctx = GuardContext(
        deduplication_required=dedup,
        completed_substages=connection.completed_substages,
        timed_out_from=connection.timed_out_from,
        holds_credentials=bool(connection.holds_credentials),
    )
    waiting: list[WaitingFor] = []
    blocked: list[Blocked] = []
    for event_type, source, route in TRANSITIONS.rows():
        if source is not connection.status or event_type.family is EventFamily.SERVICE:
            continue
        if TRANSITIONS.decide(source, event_type, ctx) is route.target:
            if all(w.event_type is not event_type for w in waiting):
                waiting.append(
                    WaitingFor(
                        event_type,
                        event_type.family,
                        route.target,
                        event_type.connection_wide,
                        producers.get(event_type.family),
                    )
                )
        elif not route.allows(ctx):
            blocked.append(
                Blocked(event_type, route.target, route.guard_text, not route.possible(dedup))
            )
    return waiting, blocked


def last_producers(
    connection: Connection, applied_by: Sequence[tuple[EventType, str]]
) -> dict[EventFamily, str]:
    """The producer that last sent each family: the history's order where it has the family,
    else the latest producer mark of it (account events change no status, so only marks know
    their producers; a mark keeps one producer's latest event, whatever its family)."""
    latest: dict[EventFamily, tuple[datetime, str]] = {}
    for (producer, _), mark in connection.producer_marks.items():
        family = mark.event_type.family
        if family not in latest or mark.occurred_at > latest[family][0]:
            latest[family] = (mark.occurred_at, producer)
    producers = {family: producer for family, (_, producer) in latest.items()}
    for event_type, producer in applied_by:
        producers[event_type.family] = producer
    return producers


def _deadline(connection: Connection, policy: Policy, now: datetime) -> Deadline | None:
    """When the sweeper will time the status out: the policy's limit after the status changed,
    with the event `Connection.due_timeout` raises then."""
    if connection.status is None or connection.status_changed_at is None:
        return None
    limit = policy.timeout_for(connection.status)
    if limit is None:
        return None
    at = connection.status_changed_at + limit
    timeout = connection.due_timeout(at, policy)
    if timeout is None:
        return None
    return Deadline(timeout.type, at, (at - now).total_seconds())


def _parked_line(parked: ParkedEvent, policy: Policy, now: datetime) -> ParkedLine:
    """How long a parked event waited, and how long it may still wait before it is refused."""
    age = now - parked.parked_at
    return ParkedLine(
        parked.event.event_id,
        parked.event.type,
        parked.event.session_id,
        parked.parked_at,
        age.total_seconds(),
        max(0.0, (policy.park_window - age).total_seconds()),
    )


def _why_not(view: ConnectionView) -> list[str]:
    """The unmet conditions of `can_extract`, each as a person reads it."""
    reasons = []
    if view.credentials_valid is None:
        reasons.append("no credentials yet: the connection was never authorized")
    elif not view.credentials_valid:
        reasons.append(f"credentials are not valid: {view.credentials_error or 'unknown error'}")
    if view.active_accounts == 0:
        reasons.append(f"no active account ({view.account_status})")
    if view.deleted_at is not None:
        reasons.append(f"the connection was deleted at {view.deleted_at.isoformat()}")
    return reasons
