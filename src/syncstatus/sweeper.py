"""The service's clock: times out statuses that stayed too long and expires parked events."""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy.exc
import structlog

from syncstatus.engine import BatchResult, StatusEngine

log = structlog.get_logger(__name__)


class TimeoutSweeper:
    def __init__(
        self,
        engine: StatusEngine,
        interval_s: float,
        on_sweep: Callable[[BatchResult], None] = lambda _: None,
    ) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._on_sweep = on_sweep

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval_s):
            try:
                while (result := self._engine.sweep()).outcomes or result.refusals:
                    self._report(result)
            except sqlalchemy.exc.DBAPIError as error:
                log.warning("sweeper cannot reach the database", error=str(error).splitlines()[0])

    def _report(self, result: BatchResult) -> None:
        self._on_sweep(result)
        for t in result.transitions:
            log.info(
                "status timed out",
                connection_id=t.connection_id,
                session_id=t.session_id,
                event_id=str(t.event_id),
                from_status=int(t.from_status or 0),
                to_status=int(t.to_status),
            )
        for r in result.refusals:
            log.warning(
                "parked event expired",
                connection_id=r.event.connection_id,
                session_id=r.event.session_id,
                event_id=str(r.event.event_id),
                reason=r.reason.value,
                detail=r.detail,
            )
