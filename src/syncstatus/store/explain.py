"""The read behind "why is it stuck": one connection's row, its parked events, its last dead
letters and its view, read in one transaction and explained by the domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from syncstatus.statemachine.connection import Connection, ParkedEvent
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.explain import Explanation, RefusalLine, explain
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.errors import translated
from syncstatus.store.rows import CONNECTION_COLUMNS, connection_from_row, event_from_json
from syncstatus.store.views import PostgresViews

LAST_REFUSALS = 10
"""How many of a connection's dead letters an explanation lists, newest first."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExplainQueries:
    """Explains one connection at the clock's now, from what the engine stored of it."""

    def __init__(
        self, engine: sa.Engine, policy: Policy, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock

    def explain(self, connection_id: str, *, scope: Scope) -> Explanation | None:
        """None when no event of the connection was ever applied, or it is outside `scope`
        (None: every workspace)."""
        with translated(), self.engine.connect() as connection:
            raw = connection.connection.driver_connection
            row = raw.execute(
                f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE connection_id = %s "
                "AND (%s::text IS NULL OR workspace_id = %s::text)",
                (connection_id, scope, scope),
            ).fetchone()
            if row is None:
                return None
            stored = connection_from_row(row)
            _attach_parked(raw, stored)
            refusals = _last_refusals(raw, connection_id)
            applied_by = _applied_by(raw, connection_id)
            view = PostgresViews(raw).load([connection_id]).get(connection_id)
        if view is None:
            return None
        return explain(stored, view, refusals, self.policy, self.clock(), applied_by)


def _attach_parked(raw: Any, connection: Connection) -> None:
    """The parked events in the order they arrived, as the engine releases them."""
    rows = raw.execute(
        "SELECT parked_at, event FROM parked_events WHERE connection_id = %s ORDER BY arrival",
        (connection.connection_id,),
    ).fetchall()
    connection.parked = [ParkedEvent(event_from_json(event), at) for at, event in rows]


def _applied_by(raw: Any, connection_id: str) -> list[tuple[EventType, str]]:
    """The last transition of each event type, oldest first: enough for the latest of each
    family, however long the history."""
    rows = raw.execute(
        "SELECT event_type, producer FROM (SELECT DISTINCT ON (event_type) event_type, "
        "producer, sequence FROM status_history WHERE connection_id = %s "
        "ORDER BY event_type, sequence DESC) latest ORDER BY sequence",
        (connection_id,),
    ).fetchall()
    return [(EventType(event_type), producer) for event_type, producer in rows]


def _last_refusals(raw: Any, connection_id: str) -> list[RefusalLine]:
    rows = raw.execute(
        "SELECT reason, detail, event_type, event_id, refused_at FROM dead_letters "
        "WHERE connection_id = %s ORDER BY refused_at DESC, id DESC LIMIT %s",
        (connection_id, LAST_REFUSALS),
    ).fetchall()
    return [RefusalLine(*row) for row in rows]
