"""The status engine: applies events to connections, one unit of work per batch.

This is the one use case every entry point shares: the Kafka consumer, the sweeper, the
benchmarks and the tests all call `apply_batch` (or `apply_event` for one event), on any store
that implements the port (PostgreSQL in production, memory in the unit tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from syncstatus.service.inbound import Inbound, Origin, RejectedMessage, redrive_claim
from syncstatus.service.ports import ConcurrentUpdate, Store, UnitOfWork
from syncstatus.statemachine.connection import Connection, Outcome, Policy, Refusal, Transition
from syncstatus.statemachine.events import SessionEvent
from syncstatus.statemachine.view import project

SWEEP_LIMIT = 500
"""Most connections one sweep times out, and most whose parked events it expires."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    def collect(self, connections: Sequence[Connection]) -> None:
        for connection in connections:
            self.transitions.extend(connection.transitions)
            self.refusals.extend(connection.refusals)


class _RolledBack(Exception):
    """Ends a rehearsal's unit of work, which rolls back when its block raises."""

    def __init__(self, result: BatchResult) -> None:
        self.result = result


class StatusEngine:
    """Decides with the connection aggregate and persists through one unit of work.

    A batch that loses an optimistic-concurrency race is retried from the start with fresh
    state, so concurrent writers never both win and neither loses its events.
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Callable[[], datetime] = utc_now,
        attempts: int = 20,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self._retrying = Retrying(
            retry=retry_if_exception_type(ConcurrentUpdate),
            stop=stop_after_attempt(attempts),
            wait=wait_random(0, 0.05),
            reraise=True,
        )

    def apply_event(self, event: SessionEvent, origin: Origin | None = None) -> Outcome:
        return self.apply_batch([Inbound(event, origin)]).outcomes[0]

    def apply_batch(
        self, items: Sequence[Inbound], rejected: Sequence[RejectedMessage] = ()
    ) -> BatchResult:
        """In order; a duplicate (seen before or earlier in the batch) changes nothing."""
        return self._retrying(self._apply_once, items, rejected)

    def sweep(self, limit: int = SWEEP_LIMIT) -> BatchResult:
        """Apply the timeouts due now and refuse parked events that waited too long."""
        return self._retrying(self._sweep_once, limit)

    def rehearse(self, items: Sequence[Inbound]) -> BatchResult:
        """What `apply_batch` would decide now if the redrives the items name were asked for,
        keeping nothing: the same claims, the same aggregates loaded through the store, the
        same policy, in a unit of work rolled back."""
        try:
            with self.store.unit_of_work() as uow:
                redrives = [i for item in items if (i := item.redrive_of) is not None]
                uow.dead_letters.request_redrive(redrives, "dry run", self.clock())
                result, connections, _ = self._decide(uow, items)
                result.collect(list(connections.values()))
                raise _RolledBack(result)
        except _RolledBack as rolled_back:
            return rolled_back.result

    def _apply_once(
        self, items: Sequence[Inbound], rejected: Sequence[RejectedMessage]
    ) -> BatchResult:
        with self.store.unit_of_work() as uow:
            result, connections, origins = self._decide(uow, items)
            record(uow, connections.values(), origins, rejected)
        result.collect(list(connections.values()))
        return result

    def _decide(
        self, uow: UnitOfWork, items: Sequence[Inbound]
    ) -> tuple[BatchResult, dict[str, Connection], dict[uuid.UUID, Origin]]:
        """Claim, load and decide each item in order; a claim already taken (before, or
        earlier in the batch) is a duplicate. Returns the messages the fresh events came in."""
        result = BatchResult()
        keys = _claim_keys(uow, items)
        fresh = uow.processed.claim(keys)
        sessions: dict[str, set[str]] = {}
        for item in items:
            sessions.setdefault(item.event.connection_id, set()).add(item.event.session_id)
        connections = uow.connections.load(sessions)
        now = self.clock()
        origins: dict[uuid.UUID, Origin] = {}
        for item, key in zip(items, keys, strict=True):
            if key not in fresh:
                result.outcomes.append(Outcome.DUPLICATE)
                continue
            fresh.discard(key)
            if item.origin is not None:
                origins[item.event.event_id] = item.origin
            connection = connections[item.event.connection_id]
            result.outcomes.append(connection.accept(item.event, now, self.policy))
        return result, connections, origins

    def _sweep_once(self, limit: int) -> BatchResult:
        result = BatchResult()
        with self.store.unit_of_work() as uow:
            now = self.clock()
            due = uow.connections.lock_due(now, self.policy, limit)
            timeouts = [e for c in due.values() if (e := c.due_timeout(now, self.policy))]
            fresh = uow.processed.claim([event.event_id for event in timeouts])
            for event in timeouts:
                if event.event_id in fresh:
                    result.outcomes.append(due[event.connection_id].accept(event, now, self.policy))
            expired = uow.connections.lock_expired_parked(now - self.policy.park_window, limit)
            for connection_id, connection in expired.items():
                if connection_id not in due:
                    connection.expire_parked(now, self.policy)
                    due[connection_id] = connection
            record(uow, due.values())
        result.collect(list(due.values()))
        return result


def _claim_keys(uow: UnitOfWork, items: Sequence[Inbound]) -> list[uuid.UUID]:
    """What each item claims before it is decided: its event id, or for a redrive the key of
    its dead letter. Only when the store vouches for the redrive (that dead letter was asked to
    be redriven, and it refused this very event): a header, which any producer can write,
    never buys an event a second application."""
    named = [i for item in items if (i := item.redrive_of) is not None]
    vouched = uow.dead_letters.redriven(named) if named else {}
    return [
        redrive_claim(item.redrive_of)
        if item.redrive_of is not None and vouched.get(item.redrive_of) == item.event.event_id
        else item.event.event_id
        for item in items
    ]


def record(
    uow: UnitOfWork,
    connections: Iterable[Connection],
    origins: Mapping[uuid.UUID, Origin] | None = None,
    rejected: Sequence[RejectedMessage] = (),
) -> None:
    """Write what the aggregates decided, dead-letter what they refused (with the message
    each refused event came in, parked or not) and keep the connections view in step, in the
    order the aggregates applied their events."""
    everything = list(connections)
    origins = origins or {}
    released = uow.connections.save(everything, origins)
    refusals = [r for c in everything for r in c.refusals]
    uow.dead_letters.add(refusals, {**released, **origins}, rejected)
    touched = [c for c in everything if c.applied]
    views = uow.views.load(c.connection_id for c in touched)
    uow.views.save(
        [view for c in touched if (view := project(views.get(c.connection_id), c.applied))]
    )
