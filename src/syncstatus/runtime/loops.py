"""The service's clock: timeouts, expired parked events, retention and scheduled syncs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from syncstatus.service.engine import BatchResult, StatusEngine, utc_now
from syncstatus.service.ports import ConcurrentUpdate, StoreError
from syncstatus.store.commands import CommandStore
from syncstatus.store.retention import RetentionStore

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
            except StoreError as error:
                log.warning("sweeper cannot reach the database", error=str(error))
            except ConcurrentUpdate as error:
                log.warning("sweep kept losing races; trying again next interval", error=str(error))

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


class RetentionPruner:
    """Prunes published outbox rows and old idempotency keys every `interval_s`."""

    def __init__(
        self,
        store: RetentionStore,
        outbox_for: timedelta,
        event_ids_for: timedelta,
        interval_s: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._outbox_for = outbox_for
        self._event_ids_for = event_ids_for
        self._interval_s = interval_s
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval_s):
            try:
                pruned = self._store.prune(self._clock(), self._outbox_for, self._event_ids_for)
            except StoreError as error:
                log.warning("pruner cannot reach the database", error=str(error))
                continue
            if pruned.outbox or pruned.event_ids or pruned.scheduled_commands:
                log.info(
                    "pruned",
                    outbox=pruned.outbox,
                    event_ids=pruned.event_ids,
                    scheduled_commands=pruned.scheduled_commands,
                )


class CommandScheduler:
    """Asks for syncs of active connections at their frequency and an accounts sync daily."""

    def __init__(
        self,
        store: CommandStore,
        accounts_every: timedelta,
        interval_s: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._accounts_every = accounts_every
        self._interval_s = interval_s
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval_s):
            try:
                while self._store.schedule_due(self._clock(), self._accounts_every, 500):
                    pass
            except StoreError as error:
                log.warning("scheduler cannot reach the database", error=str(error))
