"""What the relays read: status changes and dead letters not yet acknowledged by Kafka.

Each read happens in a transaction holding an advisory lock, kept while the relay publishes and
marks: one relay at a time per table, so two service instances never interleave a connection's
status changes on the topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from syncstatus.service.inbound import Origin
from syncstatus.statemachine.connection import Transition
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.store.errors import translated
from syncstatus.store.rows import event_from_json

RELAYED = {"outbox": "created_at", "dead_letters": "refused_at", "commands": "requested_at"}
"""Each table a relay publishes, and the column that says since when a row waits."""
_STATUS_CHANGES_LOCK = 4242101
_DEAD_LETTERS_LOCK = 4242102


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    reason: str
    detail: str
    connection_id: str | None
    event_type: str | None
    from_status: int | None
    event: SessionEvent | None
    origin: Origin | None


class RelayBatch:
    """Rows to publish, in order, and the means to mark those Kafka acknowledged."""

    def __init__(self, raw: Any, table: str, items: list[tuple[int, Any]]) -> None:
        self._raw = raw
        self._table = table
        self.items = items

    def mark_published(self, ids: Sequence[int]) -> None:
        if ids:
            self._raw.execute(
                f"UPDATE {self._table} SET published_at = now() WHERE id = ANY(%s)", (list(ids),)
            )


class OutboxStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def status_changes(self, limit: int) -> Iterator[RelayBatch | None]:
        """Unpublished status changes in the order they were recorded; None if another
        relay holds the lock."""
        with self._locked(_STATUS_CHANGES_LOCK) as raw:
            if raw is None:
                yield None
                return
            rows = raw.execute(
                "SELECT o.id, h.connection_id, h.sequence, h.session_id, h.app, h.from_status, "
                "h.to_status, h.event_id, h.event_type, h.producer, h.occurred_at, "
                "h.recorded_at, h.error, h.substage "
                "FROM outbox o JOIN status_history h USING (connection_id, sequence) "
                "WHERE o.published_at IS NULL ORDER BY o.id LIMIT %s",
                (limit,),
            ).fetchall()
            yield RelayBatch(raw, "outbox", [(row[0], _transition(row[1:])) for row in rows])

    @contextmanager
    def dead_letters(self, limit: int) -> Iterator[RelayBatch | None]:
        with self._locked(_DEAD_LETTERS_LOCK) as raw:
            if raw is None:
                yield None
                return
            rows = raw.execute(
                "SELECT id, reason, detail, connection_id, event_type, from_status, event, origin "
                "FROM dead_letters WHERE published_at IS NULL ORDER BY id LIMIT %s",
                (limit,),
            ).fetchall()
            yield RelayBatch(raw, "dead_letters", [(row[0], _dead_letter(row)) for row in rows])

    def backlog(self, table: str) -> tuple[int, float]:
        """Rows of a relayed table not yet acknowledged, and the age in seconds of the oldest."""
        since = RELAYED[table]
        with translated(), self.engine.connect() as connection:
            count, age = connection.execute(
                sa.text(
                    f"SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min({since})), 0) "
                    f"FROM {table} WHERE published_at IS NULL"
                )
            ).one()
        return int(count), float(age)

    def _locked(self, key: int) -> AbstractContextManager[Any]:
        return advisory_locked(self.engine, key)


@contextmanager
def advisory_locked(engine: sa.Engine, key: int) -> Iterator[Any]:
    """A transaction holding the advisory lock `key`, or None if another holds it."""
    with translated(), engine.begin() as connection:
        raw = connection.connection.driver_connection
        locked = raw.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]
        yield raw if locked else None


def _transition(row: Sequence[Any]) -> Transition:
    (
        connection_id,
        sequence,
        session_id,
        app,
        from_status,
        to_status,
        event_id,
        event_type,
        producer,
        occurred_at,
        recorded_at,
        error,
        substage,
    ) = row
    return Transition(
        connection_id=connection_id,
        sequence=sequence,
        session_id=session_id,
        app=app,
        from_status=None if from_status is None else Status(from_status),
        to_status=Status(to_status),
        event_id=event_id,
        event_type=EventType(event_type),
        producer=producer,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        error=error,
        substage=Substage(substage) if substage else None,
    )


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    row_id, reason, detail, connection_id, event_type, from_status, event, origin = row
    return DeadLetter(
        id=row_id,
        reason=reason,
        detail=detail,
        connection_id=connection_id,
        event_type=event_type,
        from_status=from_status,
        event=None if event is None else event_from_json(event),
        origin=None if origin is None else Origin.from_json(origin),
    )
