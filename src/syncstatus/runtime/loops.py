"""The service's clock: timeouts, expired parked events, retention and scheduled syncs.

Each is a piece of work that `every` runs at its interval; a database that cannot be reached
is logged and the next interval tries again. Work that comes in pieces (`drain`) is repeated
within one interval until a piece finds nothing left to do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from syncstatus.service.commands import CommandService
from syncstatus.service.engine import BatchResult, StatusEngine, utc_now
from syncstatus.service.ports import ConcurrentUpdate, StoreError
from syncstatus.service.reports import log_result
from syncstatus.store.retention import RetentionStore

log = structlog.get_logger(__name__)

SCHEDULE_LIMIT = 500
"""Most syncs the scheduler issues in one transaction."""


def every(
    interval_s: float, work: Callable[[], object], name: str
) -> Callable[[threading.Event], None]:
    """A loop's run: `work` every `interval_s` until stopped, carrying on after a StoreError."""

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                work()
            except StoreError as error:
                log.warning(f"{name} cannot reach the database", error=str(error))

    return run


def drain(step: Callable[[], object]) -> None:
    """Repeat `step` while it reports that it found work."""
    while step():
        pass


def sweep_timeouts(
    engine: StatusEngine, on_sweep: Callable[[BatchResult], None] = lambda _: None
) -> Callable[[], None]:
    """Apply the timeouts that are due and expire parked events that waited too long."""

    def sweep_once() -> bool:
        result = engine.sweep()
        if not (result.outcomes or result.refusals):
            return False
        on_sweep(result)
        log_result(
            result, changed="status timed out", changed_level="info", refused="parked event expired"
        )
        return True

    def sweep() -> None:
        try:
            drain(sweep_once)
        except ConcurrentUpdate as error:
            log.warning("sweep kept losing races; trying again next interval", error=str(error))

    return sweep


def prune_retention(
    store: RetentionStore,
    outbox_for: timedelta,
    event_ids_for: timedelta,
    clock: Callable[[], datetime] = utc_now,
    webhook_log_for: timedelta | None = None,
) -> Callable[[], None]:
    """Prune published outbox rows, old idempotency keys and the webhook delivery log."""

    def prune() -> None:
        pruned = store.prune(clock(), outbox_for, event_ids_for, webhook_log_for)
        if (
            pruned.outbox
            or pruned.event_ids
            or pruned.scheduled_commands
            or (pruned.webhook_deliveries)
        ):
            log.info(
                "pruned",
                outbox=pruned.outbox,
                event_ids=pruned.event_ids,
                scheduled_commands=pruned.scheduled_commands,
                webhook_deliveries=pruned.webhook_deliveries,
            )

    return prune


def schedule_commands(
    commands: CommandService, accounts_every: timedelta, clock: Callable[[], datetime] = utc_now
) -> Callable[[], None]:
    """Ask for syncs of active connections at their frequency and an accounts sync daily."""
    return lambda: drain(lambda: commands.schedule_due(clock(), accounts_every, SCHEDULE_LIMIT))
