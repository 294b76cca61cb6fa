"""Everything the rest of the service knows about transitions, derived once from the machine.

The hot path asks `TRANSITIONS.decide(...)`, a dict lookup plus the machine's own guard
functions, instead of building a python-statemachine instance per event (~0.1 µs against
~0.5 ms). A hypothesis test checks that both give the same answer on every input.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.statemachine.statuses import Status


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
        self.rank = self._distances_from_new()
        self.target_of = {
            event: route.target for (_, event), rs in self._routes.items() for route in rs
        }

    def decide(self, source: Status | None, event: EventType, ctx: GuardContext) -> Status | None:
        """The status `event` moves a connection at `source` to, or None if it may not."""
        for route in self._routes.get((source, event), ()):
            if not route.guards or route.allows(ctx):
                return route.target
        return None

    def sources_of(self, event: EventType) -> frozenset[Status | None]:
        return frozenset(source for source, e in self._routes if e is event)

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

    def _distances_from_new(self) -> dict[Status | None, int]:
        """How far along the flow each status lies: transitions from a new connection.

        Paths through error and timeout statuses do not count (a retry after an error is not
        progress) and guards are ignored. A pending event whose target lies farther than the
        current status may still apply once the events before it arrive; that decides parking.
        """
        edges: dict[Status | None, set[Status]] = {}
        for (source, _), rs in self._routes.items():
            edges.setdefault(source, set()).update(route.target for route in rs)
        rank: dict[Status | None, int] = {None: 0}
        queue = deque([None])
        while queue:
            node = queue.popleft()
            if node is not None and node.is_error:
                continue
            for target in sorted(edges.get(node, ())):
                if target not in rank:
                    rank[target] = rank[node] + 1
                    queue.append(target)
        return rank


TRANSITIONS = TransitionTable(ConnectionStatusMachine)
