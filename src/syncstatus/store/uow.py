"""The PostgreSQL unit of work: one transaction, the repositories hanging off it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from syncstatus.store.commands import PostgresCommands
from syncstatus.store.connections import PostgresConnections
from syncstatus.store.dead_letters import PostgresDeadLetters
from syncstatus.store.errors import translated
from syncstatus.store.views import PostgresViews


class PostgresProcessedEvents:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def claim(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not event_ids:
            return set()
        rows = self._raw.execute(
            "INSERT INTO processed_events (event_id) SELECT unnest(%b::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            (list(event_ids),),
        ).fetchall()
        return {row[0] for row in rows}


class PostgresUnitOfWork:
    """One database transaction over the connections of one batch."""

    def __init__(self, connection: sa.Connection) -> None:
        raw = connection.connection.driver_connection
        self.processed = PostgresProcessedEvents(raw)
        self.connections = PostgresConnections(raw)
        self.views = PostgresViews(raw)
        self.dead_letters = PostgresDeadLetters(raw)
        self.commands = PostgresCommands(raw)


class PostgresStore:
    """Opens units of work on a SQLAlchemy engine (psycopg 3 driver)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def unit_of_work(self) -> Iterator[PostgresUnitOfWork]:
        with translated(), self.engine.begin() as connection:
            yield PostgresUnitOfWork(connection)
