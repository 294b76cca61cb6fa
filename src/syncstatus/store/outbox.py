"""What the relays read: status changes, dead letters, commands and redrives not yet
acknowledged by Kafka.

Each read happens in a transaction holding an advisory lock, kept while the relay publishes and
marks: one relay at a time per table, so two service instances never interleave a connection's
status changes on the topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from syncstatus.service.inbound import Origin
from syncstatus.statemachine.commands import CommandType, IssuedCommand
from syncstatus.statemachine.events import SessionEvent
from syncstatus.store.errors import translated
from syncstatus.store.rows import HISTORY_COLUMNS, event_from_json, transition_from_row


@dataclass(frozen=True, slots=True)
class Relayed:
    """One relayed table: the advisory lock its relay holds, and its unpublished rows in the
    order they were written (`id` first)."""

    table: str
    lock: int
    waiting_since: str
    select: str


STATUS_CHANGES = Relayed(
    "outbox",
    4242101,
    "created_at",
    "SELECT o.id, "
    + ", ".join(f"h.{c}" for c in HISTORY_COLUMNS)
    + " FROM outbox o JOIN status_history h USING (connection_id, sequence) "
    "WHERE o.published_at IS NULL ORDER BY o.id LIMIT %s",
)
DEAD_LETTERS = Relayed(
    "dead_letters",
    4242102,
    "refused_at",
    "SELECT id, reason, detail, connection_id, event_type, from_status, event, origin "
    "FROM dead_letters WHERE published_at IS NULL ORDER BY id LIMIT %s",
)
COMMANDS = Relayed(
    "commands",
    4242103,
    "requested_at",
    "SELECT c.id, c.command_id, c.connection_id, v.app, c.command, c.parameters, "
    "c.requested_by, c.requested_at, c.workspace_id FROM commands c "
    "JOIN connection_view v USING (connection_id) "
    "WHERE c.published_at IS NULL ORDER BY c.id LIMIT %s",
)
REDRIVES = Relayed(
    "redrives",
    4242104,
    "requested_at",
    "SELECT r.id, r.dead_letter_id, r.requested_by, d.origin FROM redrives r "
    "JOIN dead_letters d ON d.id = r.dead_letter_id "
    "WHERE r.published_at IS NULL ORDER BY r.id LIMIT %s",
)
RELAYED = {r.table: r for r in (STATUS_CHANGES, DEAD_LETTERS, COMMANDS, REDRIVES)}


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


@dataclass(frozen=True, slots=True)
class Redrive:
    """A redrive asked for: the dead letter, who asked, and the message it came in (only
    dead letters with one are queued)."""

    dead_letter_id: int
    requested_by: str
    origin: Origin


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

    def status_changes(self, limit: int) -> Iterator[RelayBatch | None]:
        """Unpublished status changes in the order they were recorded; None if another
        relay holds the lock."""
        return self._batch(STATUS_CHANGES, limit, lambda row: transition_from_row(row[1:]))

    def dead_letters(self, limit: int) -> Iterator[RelayBatch | None]:
        return self._batch(DEAD_LETTERS, limit, _dead_letter)

    def commands(self, limit: int) -> Iterator[RelayBatch | None]:
        return self._batch(COMMANDS, limit, _command)

    def redrives(self, limit: int) -> Iterator[RelayBatch | None]:
        return self._batch(
            REDRIVES, limit, lambda row: Redrive(row[1], row[2], Origin.from_json(row[3]))
        )

    @contextmanager
    def _batch(
        self, relayed: Relayed, limit: int, to_item: Callable[[Sequence[Any]], Any]
    ) -> Iterator[RelayBatch | None]:
        with translated(), self.engine.begin() as connection:
            raw = connection.connection.driver_connection
            (locked,) = raw.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (relayed.lock,)
            ).fetchone()
            if not locked:
                yield None
                return
            rows = raw.execute(relayed.select, (limit,)).fetchall()
            yield RelayBatch(raw, relayed.table, [(row[0], to_item(row)) for row in rows])

    def backlog(self, table: str) -> tuple[int, float]:
        """Rows of a relayed table not yet acknowledged, and the age in seconds of the oldest."""
        since = RELAYED[table].waiting_since
        with translated(), self.engine.connect() as connection:
            count, age = connection.execute(
                sa.text(
                    f"SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min({since})), 0) "
                    f"FROM {table} WHERE published_at IS NULL"
                )
            ).one()
        return int(count), float(age)


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


def _command(row: Sequence[Any]) -> IssuedCommand:
    _, command_id, connection_id, app, command, parameters, requested_by, requested_at = row[:8]
    return IssuedCommand(
        command_id,
        connection_id,
        app,
        CommandType(command),
        parameters,
        requested_by,
        requested_at,
        workspace_id=row[8],
    )
