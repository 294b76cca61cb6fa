"""The two statuses of a connection card (seed 004): its source data sync and its plan data
refresh, each derived from the machine's stages so that nothing is written twice.

The source data sync is the loading, deduplication and structuring stages (2, 11, 12, 13, 14,
15, 21, 22, 25); the plan data refresh is the processing stage (16, 17, 18). A Timed Out (23)
belongs to the part it timed out from, which the transition's `from_status` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cached_property

from syncstatus.statemachine.records import Transition
from syncstatus.statemachine.statuses import Stage, Status


class RunOutcome(Enum):
    SUCCESS = "success"
    IN_PROGRESS = "in_progress"
    ERROR = "error"


class Part(Enum):
    """A part of a session a card shows on its own, by the stages it spans."""

    SOURCE_SYNC = (Stage.LOADING, Stage.DEDUPLICATION, Stage.STRUCTURING)
    DATA_REFRESH = (Stage.PROCESSING,)

    @cached_property
    def statuses(self) -> frozenset[Status]:
        """The statuses of its stages, found once: a part is asked about every transition."""
        return frozenset(status for status in Status if status.stage in self.value)

    @cached_property
    def last_stage(self) -> Stage:
        return max(self.value)

    def holds(self, status: Status | None) -> bool:
        return status in self.statuses

    def holds_target(self, t: Transition) -> bool:
        """The transition ends in this part: one of its statuses, or a timeout from one."""
        if t.to_status is Status.TIMED_OUT:
            return self.holds(t.from_status)
        return self.holds(t.to_status)

    def is_forwards(self, status: Status) -> bool:
        """A status a run of this part completes into: a later stage that is not an error,
        ending only at Synced (the sync reaches 16, 18 or 19; the refresh only 19)."""
        if status.is_error or status.stage <= self.last_stage:
            return False
        return status.stage is not Stage.END or status is Status.SYNCED


@dataclass(slots=True)
class RunState:
    """One part's last run: its outcome (None before any) and when it last started, succeeded
    and failed, with that failure's error."""

    state: RunOutcome | None = None
    started_at: datetime | None = None
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None

    def apply(self, part: Part, t: Transition) -> None:
        """Moving into the part from outside it (or from one of its errors) starts a run;
        ending in one of its errors fails it; leaving it forwards succeeds it. Leaving it any
        other way (a new authorization, a deauthorization, a disconnection) cuts the run off,
        so it is shown failed rather than running forever."""
        running = part.holds(t.from_status) and not _is_error(t.from_status)
        if part.holds_target(t):
            if not running:
                self.state, self.started_at = RunOutcome.IN_PROGRESS, t.occurred_at
            if t.to_status.is_error:
                self._fail(t, t.error)
        elif running and part.is_forwards(t.to_status):
            self.state, self.succeeded_at = RunOutcome.SUCCESS, t.occurred_at
        elif running:
            self._fail(t, t.error or f"Interrupted: {t.to_status.label}")

    def _fail(self, t: Transition, error: str | None) -> None:
        self.state, self.failed_at, self.error = RunOutcome.ERROR, t.occurred_at, error


def _is_error(status: Status | None) -> bool:
    return status is not None and status.is_error
