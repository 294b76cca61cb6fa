"""The status records each story must produce, from the stories and the declared machine only.

Nothing here imports the engine, the aggregate or the derived table: the machine class itself
says where each applied event leads, the stories say which events are applied at all, and the
clock's timeouts end the stories that stall. Records come in the stories' own order: every
status is left by the events of one topic only, so however the topics interleave, a
connection's events apply in the order they happened.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from bench.faults.stories import APPLY, Story
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.statemachine.statuses import Status

E = EventType
ABOUT_THE_CONNECTION = {E.DEAUTHORIZED, E.DISCONNECTED}


@dataclass(frozen=True)
class ExpectedRecord:
    sequence: int
    session_id: str
    from_code: int | None
    to_code: int
    cause_event_type: str
    cause_event_id: uuid.UUID | None  # None: the service's clock, an id of its own
    error: str | None
    occurred_at: datetime | None  # None: when the clock ran out


@dataclass
class Expected:
    records: list[ExpectedRecord]
    refusals: dict[uuid.UUID, str]  # event id -> dead-letter reason
    before: list[int]  # records there must be before each of the story's messages


def expected(story: Story, dedup_apps: frozenset[str], timeouts: dict[str, float]) -> Expected:
    """`timeouts`: the authorization and the stage timeout in seconds, as the service has them."""
    state = _State(dedup=story.messages[0].event.app in dedup_apps)
    refusals: dict[uuid.UUID, str] = {}
    before = []
    for planned in story.messages:
        before.append(len(state.records))
        if planned.duplicate:
            continue
        if planned.expect != APPLY:
            refusals[planned.event.event_id] = planned.expect
        elif planned.event.type.changes_status:
            state.apply(planned.event)
    if story.stalls:
        state.time_out(timeouts)
    return Expected(state.records, refusals, before)


class _State:
    def __init__(self, dedup: bool) -> None:
        self.dedup = dedup
        self.status: Status | None = None
        self.session: str | None = None
        self.substages: frozenset[Substage] = frozenset()
        self.credentials: bool | None = None
        self.records: list[ExpectedRecord] = []

    def apply(self, event: SessionEvent) -> None:
        if event.type not in ABOUT_THE_CONNECTION and event.session_id != self.session:
            self.session, self.substages = event.session_id, frozenset()
        target = self._send(event.type)
        self._record(target, event.type.value, event.event_id, event.error, event.occurred_at)
        if event.type is E.PROCESSING_STARTED:
            self.substages = frozenset()
        elif event.type is E.PROCESSING_SUBSTAGE_COMPLETED:
            self.substages |= {event.substage}
        if event.type is E.AUTHORIZATION_SUCCEEDED:
            self.credentials = True
        elif (
            event.type in ABOUT_THE_CONNECTION
            or event.type is E.AUTHORIZATION_FAILED
            and not self.credentials
        ):
            self.credentials = False

    def time_out(self, timeouts: dict[str, float]) -> None:
        assert self.status is not None
        if self.status is Status.AUTHORIZATION:
            kind, limit = E.AUTHORIZATION_TIMED_OUT, timeouts["authorization"]
        else:
            kind, limit = E.STAGE_TIMED_OUT, timeouts["stage"]
        error = f"{self.status.label} unchanged for {limit:g} s"
        self._record(self._send(kind), kind.value, None, error, None)

    def _send(self, kind: EventType) -> Status:
        machine = ConnectionStatusMachine(start_value=NEW if self.status is None else self.status)
        context = GuardContext(
            deduplication_required=self.dedup,
            completed_substages=self.substages,
            holds_credentials=bool(self.credentials),
        )
        machine.send(kind.trigger, ctx=context)  # raises if a story is not what it claims
        return Status(next(iter(machine.configuration_values)))

    def _record(self, target, kind, event_id, error, occurred_at) -> None:  # noqa: ANN001
        self.records.append(
            ExpectedRecord(
                sequence=len(self.records) + 1,
                session_id=self.session or "",
                from_code=None if self.status is None else int(self.status),
                to_code=int(target),
                cause_event_type=kind,
                cause_event_id=event_id,
                error=error,
                occurred_at=occurred_at,
            )
        )
        self.status = target
