"""Retention: the outbox, the idempotency keys, the scheduler's own published commands and the
webhook delivery log are pruned; history, dead letters and the commands people issued are the
audit trail and stay (so the change feed's catch-up reaches back to every first record)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from syncstatus.service.commands import SCHEDULER
from syncstatus.store.errors import translated


@dataclass(frozen=True, slots=True)
class Pruned:
    outbox: int
    event_ids: int
    scheduled_commands: int
    webhook_deliveries: int = 0


class RetentionStore:
    def __init__(self, engine: sa.Engine, chunk: int = 10000) -> None:
        self.engine = engine
        self.chunk = chunk

    def prune(
        self,
        now: datetime,
        outbox_for: timedelta,
        event_ids_for: timedelta,
        webhook_log_for: timedelta | None = None,
    ) -> Pruned:
        """Delete in chunks, so a large backlog never holds long locks."""
        if webhook_log_for is not None:
            self._delete_until_done(
                "DELETE FROM webhook_redeliveries WHERE id IN (SELECT id FROM "
                "webhook_redeliveries WHERE done_at < :cutoff LIMIT :chunk)",
                now - webhook_log_for,
            )
        return Pruned(
            outbox=self._delete_until_done(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
                "WHERE published_at < :cutoff LIMIT :chunk)",
                now - outbox_for,
            ),
            event_ids=self._delete_until_done(
                "DELETE FROM processed_events WHERE event_id IN (SELECT event_id "
                "FROM processed_events WHERE processed_at < :cutoff LIMIT :chunk)",
                now - event_ids_for,
            ),
            scheduled_commands=self._delete_until_done(
                "DELETE FROM commands WHERE id IN (SELECT id FROM commands "
                f"WHERE requested_by = '{SCHEDULER}' AND published_at < :cutoff LIMIT :chunk)",
                now - outbox_for,
            ),
            webhook_deliveries=0
            if webhook_log_for is None
            else self._delete_until_done(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
                "WHERE attempted_at < :cutoff LIMIT :chunk)",
                now - webhook_log_for,
            ),
        )

    def _delete_until_done(self, statement: str, cutoff: datetime) -> int:
        total = 0
        while True:
            with translated(), self.engine.begin() as connection:
                deleted = connection.execute(
                    sa.text(statement), {"cutoff": cutoff, "chunk": self.chunk}
                ).rowcount
            total += deleted
            if deleted < self.chunk:
                return total
