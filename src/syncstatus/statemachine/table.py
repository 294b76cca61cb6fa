"""Everything the rest of the service knows about transitions, derived once from the machine.

The hot path asks `TRANSITIONS.decide(...)`, a dict lookup plus the machine's own guard
functions, instead of building a python-statemachine instance per event (~0.1 µs against
~0.5 ms), and before it `unguarded_target`, which needs no guard context at all. Hypothesis
tests check that the library, `decide` and `unguarded_target` give the same answer on every
input.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from syncstatus.statemachine.events import EventFamily, EventType
from syncstatus.statemachine.machine import (
    NEW,
    PER_APP_GUARDS,
    ConnectionStatusMachine,
    GuardContext,
)
from syncstatus.statemachine.statuses import Stage, Status


@dataclass(frozen=True, slots=True)
class Route:
    """One declared transition for an event from a source status."""

    target: Status
    guards: tuple[tuple[str, bool], ...]

    def allows(self, ctx: GuardContext) -> bool:
        return all(
            getattr(ConnectionStatusMachine, name)(ctx) is expected
            for name, expected in self.guards
        )

    def possible(self, deduplication_required: bool) -> bool:
        """False when a guard that depends only on the app rules this route out for good."""
        ctx = GuardContext(deduplication_required=deduplication_required)
        return all(
            getattr(ConnectionStatusMachine, name)(ctx) is expected
            for name, expected in self.guards
            if name in PER_APP_GUARDS
        )

    @property
    def guard_text(self) -> str:
        return " and ".join(name if expected else f"not {name}" for name, expected in self.guards)


class TransitionTable:
    """The machine's transitions as `(source, event type) -> routes`, in declaration order."""

    def __init__(self, machine: type[ConnectionStatusMachine]) -> None:
        routes: dict[tuple[Status | None, EventType], list[Route]] = {}
        for state in machine.states:
            source = None if state.value == NEW else Status(state.value)
            for transition in state.transitions:
                guards = tuple((spec.func, spec.expected_value) for spec in transition.cond)
                for event_id in transition.event.split():
                    key = (source, EventType(event_id.upper()))
                    routes.setdefault(key, []).append(
                        Route(Status(transition.target.value), guards)
                    )
        self._routes = {key: tuple(value) for key, value in routes.items()}
        self._unguarded = {
            key: rs[0].target for key, rs in self._routes.items() if not rs[0].guards
        }
        self._sources: dict[EventType, frozenset[Status | None]] = {}
        for source, event in self._routes:
            self._sources[event] = self._sources.get(event, frozenset()) | {source}
        self.session_openers = frozenset(
            event
            for source, event in self._routes
            if source in (None, Status.SYNCED)
            and event.family is not EventFamily.SERVICE
            and not event.connection_wide
        )
        """The event types that may open a session: those that start a connection never seen or
        a new sync of a synced one (AUTHORIZATION_STARTED, LOADING_STARTED, WEBHOOK_PENDING)."""
        self._ahead = {dedup: self._reachable_within_a_session(dedup) for dedup in (False, True)}
        self._possible_sources = {
            (event, dedup): frozenset(
                source
                for (source, e), rs in self._routes.items()
                if e is event and any(r.possible(dedup) for r in rs)
            )
            for event in EventType
            for dedup in (False, True)
        }

    def may_still_apply(
        self, event: EventType, status: Status, deduplication_required: bool
    ) -> bool:
        """Whether a session at `status` can still reach a status `event` applies from."""
        ahead = self._ahead[deduplication_required][status]
        return bool(self._possible_sources[event, deduplication_required] & ahead)

    def unguarded_target(self, source: Status | None, event: EventType) -> Status | None:
        """What `decide` answers whatever the context, when the first route for the pair has
        no guard (most pairs): then the hot path builds no context. None: the pair
        has no route, or it is guarded and `decide` must be asked."""
        return self._unguarded.get((source, event))

    def decide(self, source: Status | None, event: EventType, ctx: GuardContext) -> Status | None:
        """The status `event` moves a connection at `source` to, or None if it may not."""
        for route in self._routes.get((source, event), ()):
            if not route.guards or route.allows(ctx):
                return route.target
        return None

    def sources_of(self, event: EventType) -> frozenset[Status | None]:
        return self._sources.get(event, frozenset())

    def rows(self) -> list[tuple[EventType, Status | None, Route]]:
        """Every declared transition, ordered by event type then source code."""
        return sorted(
            (
                (event, source, route)
                for (source, event), rs in self._routes.items()
                for route in rs
            ),
            key=lambda row: (list(EventType).index(row[0]), row[1] or 0, row[2].target),
        )

    def _reachable_within_a_session(self, dedup: bool) -> dict[Status, frozenset[Status]]:
        """The statuses a session at each status may still pass, itself included.

        A session is over at Synced, Disconnected and Deauthorized, and a new authorization
        from outside the authorization stage starts another session, so neither leads anywhere
        within one; an error status is retried, so paths through it count, and a failed
        authorization is retried by authorizing again. The sweeper's stage timeouts are not
        waited for. Of the guards only those of the app count (`dedup`: does it deduplicate);
        the others may yet pass, and a parked event is refused once its window passes.
        """
        edges: dict[Status, set[Status]] = {}
        for (source, event), rs in self._routes.items():
            if source is None or _session_is_over(source) or event.family is EventFamily.SERVICE:
                continue
            for route in rs:
                if route.target is Status.AUTHORIZATION and source.stage is not Stage.AUTHORIZATION:
                    continue
                if route.possible(dedup):
                    edges.setdefault(source, set()).add(route.target)
        ahead: dict[Status, frozenset[Status]] = {}
        for start in Status:
            seen, queue = {start}, deque([start])
            while queue:
                for target in edges.get(queue.popleft(), ()):
                    if target not in seen:
                        seen.add(target)
                        queue.append(target)
            ahead[start] = frozenset(seen)
        return ahead


def _session_is_over(status: Status) -> bool:
    return status.ends_session and not status.is_error


TRANSITIONS = TransitionTable(ConnectionStatusMachine)


def transition_rows() -> list[tuple[EventType, list[Status | None], Status, str]]:
    """One row per event type, target and guard, with all its sources: the transitions as a
    person reads them, shared by the reference page and the API's `/statuses`."""
    grouped: dict[tuple[EventType, Status, str], list[Status | None]] = {}
    for event, source, route in TRANSITIONS.rows():
        grouped.setdefault((event, route.target, route.guard_text), []).append(source)
    return [(event, sources, target, guard) for (event, target, guard), sources in grouped.items()]
