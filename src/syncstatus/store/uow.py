"""The PostgreSQL unit of work: one transaction, the repositories hanging off it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from syncstatus.service.inbound import Origin, RejectedMessage
from syncstatus.statemachine.connection import Refusal
from syncstatus.store.commands import PostgresCommands
from syncstatus.store.connections import PostgresConnections
from syncstatus.store.errors import translated
from syncstatus.store.rows import event_json, origin_json
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


class PostgresDeadLetters:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def add(
        self,
        refusals: Sequence[Refusal],
        origins: Mapping[uuid.UUID, Origin],
        rejected: Sequence[RejectedMessage],
    ) -> None:
        rows = [
            (
                r.reason.value,
                r.detail,
                r.event.event_id,
                r.event.connection_id,
                r.event.type.value,
                None if r.from_status is None else int(r.from_status),
                event_json(r.event),
                origin_json(origins.get(r.event.event_id)),
            )
            for r in refusals
        ] + [
            (
                m.reason,
                m.detail,
                m.event.event_id if m.event else None,
                m.event.connection_id if m.event else None,
                m.event.type.value if m.event else None,
                None,
                event_json(m.event) if m.event else None,
                origin_json(m.origin),
            )
            for m in rejected
        ]
        if rows:
            self._raw.cursor().executemany(
                "INSERT INTO dead_letters (reason, detail, event_id, connection_id, "
                "event_type, from_status, event, origin) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


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
