"""What the use cases did, told once: the report of an applied batch (for metrics) and the log
lines of the transitions and refusals in a result (the consumer's and the sweeper's alike)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from syncstatus.service.engine import BatchResult

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one applied batch did, for metrics: (topic, event type) per message consumed,
    and (producer, reason) per message rejected before it became an event (producer None when
    it did not decode)."""

    consumed: list[tuple[str, str]]
    rejected: list[tuple[str | None, str]]
    result: BatchResult
    seconds: float


def log_result(
    result: BatchResult,
    *,
    changed: str = "status changed",
    changed_level: str = "debug",
    refused: str = "event refused",
) -> None:
    """One line per transition (at `changed_level`) and one warning per refusal."""
    log_changed = getattr(log, changed_level)
    for t in result.transitions:
        log_changed(
            changed,
            connection_id=t.connection_id,
            session_id=t.session_id,
            event_id=str(t.event_id),
            sequence=t.sequence,
            from_status=None if t.from_status is None else int(t.from_status),
            to_status=int(t.to_status),
        )
    for r in result.refusals:
        log.warning(
            refused,
            connection_id=r.event.connection_id,
            session_id=r.event.session_id,
            event_id=str(r.event.event_id),
            reason=r.reason.value,
            detail=r.detail,
        )
