"""The unit-of-work contract on PostgreSQL (the suite the in-memory fake passes too)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from syncstatus.service.inbound import Origin
from syncstatus.statemachine.connection import Transition
from syncstatus.store.rows import HISTORY_COLUMNS, transition_from_row
from syncstatus.store.uow import PostgresStore
from tests.helpers.store_contract import DeadLetter, Redriven, StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, db_engine: sa.Engine) -> PostgresStore:
        return PostgresStore(db_engine)

    def _rows(self, store: PostgresStore, sql: str, **params: Any) -> list[sa.Row]:
        with store.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))

    def dead_letters(self, store: PostgresStore) -> list[DeadLetter]:
        rows = self._rows(
            store,
            "SELECT reason, detail, event_id, connection_id, event_type, from_status, origin "
            "FROM dead_letters ORDER BY id",
        )
        return [(*r[:6], None if r[6] is None else Origin.from_json(r[6])) for r in rows]

    def history(self, store: PostgresStore, connection_id: str) -> list[Transition]:
        rows = self._rows(
            store,
            f"SELECT {', '.join(HISTORY_COLUMNS)} FROM status_history "
            "WHERE connection_id = :c ORDER BY sequence",
            c=connection_id,
        )
        return [transition_from_row(row) for row in rows]

    def outbox(self, store: PostgresStore) -> list[tuple[str, int]]:
        return [
            tuple(r)
            for r in self._rows(store, "SELECT connection_id, sequence FROM outbox ORDER BY id")
        ]

    def activity(self, store: PostgresStore) -> list[tuple[str, uuid.UUID, str]]:
        rows = self._rows(
            store, "SELECT connection_id, event_id, event_type FROM connection_activity ORDER BY id"
        )
        return [tuple(r) for r in rows]

    def redriven(self, store: PostgresStore) -> list[Redriven]:
        rows = self._rows(
            store,
            "SELECT id, producer, redriven_by, redriven_at, redrive_count FROM dead_letters "
            "ORDER BY id",
        )
        return [tuple(r) for r in rows]

    def redrives(self, store: PostgresStore) -> list[tuple[int, str, datetime]]:
        rows = self._rows(
            store, "SELECT dead_letter_id, requested_by, requested_at FROM redrives ORDER BY id"
        )
        return [tuple(r) for r in rows]
