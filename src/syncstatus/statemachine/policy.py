"""The rules' settings, and which statuses time out: derived from the machine's table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules' settings: which apps deduplicate, how long to wait, when a stage times out,
    how far any producer's clock may be off."""

    deduplication_apps: frozenset[str] = frozenset()
    park_window: timedelta = timedelta(seconds=60)
    authorization_timeout: timedelta = timedelta(minutes=15)
    stage_timeout: timedelta = timedelta(hours=6)
    stage_timeouts: Mapping[Status, timedelta] = field(default_factory=dict)
    clock_skew: timedelta = timedelta(minutes=5)

    def timeout_for(self, status: Status) -> timedelta | None:
        if status is Status.AUTHORIZATION:
            return self.authorization_timeout
        if status in TIMEOUT_STATUSES:
            return self.stage_timeouts.get(status, self.stage_timeout)
        return None

    @property
    def clock_margin(self) -> timedelta:
        """How far apart two producers' stamps must be to say which happened first: each clock
        may be off by the skew, in either direction."""
        return 2 * self.clock_skew


TIMEOUT_STATUSES = frozenset(TRANSITIONS.sources_of(EventType.STAGE_TIMED_OUT))
