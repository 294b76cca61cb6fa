"""Read-side queries for people: the CLI and the API read through here, never the hot path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from syncstatus.store.schema import status_history


@dataclass(frozen=True, slots=True)
class HistoryRow:
    sequence: int
    session_id: str
    from_status: int | None
    to_status: int
    event_type: str
    event_id: str
    producer: str
    occurred_at: datetime
    recorded_at: datetime
    error: str | None
    substage: str | None


class StatusQueries:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def history(self, connection_id: str) -> list[HistoryRow]:
        h = status_history.c
        query = (
            sa.select(
                h.sequence,
                h.session_id,
                h.from_status,
                h.to_status,
                h.event_type,
                sa.cast(h.event_id, sa.Text),
                h.producer,
                h.occurred_at,
                h.recorded_at,
                h.error,
                h.substage,
            )
            .where(h.connection_id == connection_id)
            .order_by(h.sequence)
        )
        with self.engine.connect() as connection:
            return [HistoryRow(*row) for row in connection.execute(query)]
