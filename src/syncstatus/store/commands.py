"""Commands people and the scheduler issue: checked against the view, recorded, then relayed
to the commands topic (the same outbox pattern as status changes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from psycopg.types.json import Jsonb

from syncstatus.service.engine import record
from syncstatus.statemachine.commands import CommandType, IssuedCommand, check
from syncstatus.statemachine.connection import Connection, Policy
from syncstatus.store.errors import translated
from syncstatus.store.outbox import RelayBatch, advisory_locked
from syncstatus.store.uow import PostgresUnitOfWork

_COMMANDS_LOCK = 4242103
SCHEDULER = "scheduler"


class ConnectionNotFound(LookupError):
    """No such connection, or it was deleted."""


class CommandStore:
    def __init__(self, engine: sa.Engine, policy: Policy) -> None:
        self.engine = engine
        self.policy = policy

    def issue(
        self,
        connection_id: str,
        command: CommandType,
        requested_by: str,
        sync_frequency_minutes: int | None = None,
    ) -> IssuedCommand:
        """Check and record one command in one transaction; CommandRefused if not allowed.

        The view row is locked, so two deletes (or a delete and a sync) cannot both pass. A
        Delete is the connection's last transition, so it first takes the connection's lock,
        as every writer of a connection does, before the view row's.
        """
        command_id = uuid.uuid4()
        with self.engine.begin() as connection:
            raw = connection.connection.driver_connection
            uow = PostgresUnitOfWork(connection)
            closing = (
                uow.connections.load({connection_id: ()})[connection_id]
                if command is CommandType.DELETE
                else None
            )
            locked = raw.execute(
                "SELECT 1 FROM connection_view WHERE connection_id = %s AND deleted_at IS NULL "
                "FOR UPDATE",
                (connection_id,),
            ).fetchone()
            if locked is None:
                raise ConnectionNotFound(connection_id)
            view = uow.views.load([connection_id])[connection_id]
            check(view, command, sync_frequency_minutes)
            parameters = (
                {"sync_frequency_minutes": str(sync_frequency_minutes)}
                if command is CommandType.SET_SYNC_FREQUENCY
                else {}
            )
            if closing is not None:
                self._close(uow, closing, command_id)
            elif command is CommandType.SET_SYNC_FREQUENCY:
                raw.execute(
                    "UPDATE connection_view SET sync_frequency_minutes = %s, next_sync_at = "
                    "COALESCE(last_synced_at, now()) + make_interval(mins => %s) "
                    "WHERE connection_id = %s",
                    (sync_frequency_minutes, sync_frequency_minutes, connection_id),
                )
            return _record(
                raw, connection_id, view.app, command, parameters, requested_by, command_id
            )

    def _close(
        self, uow: PostgresUnitOfWork, connection: Connection, command_id: uuid.UUID
    ) -> None:
        """The final status record (to 26, caused by the command); every later event of the
        connection is refused, and its parked ones are refused now."""
        now = datetime.now(UTC)
        uow.processed.claim([command_id])
        connection.accept(connection.deletion(command_id, now), now, self.policy)
        record(uow, [connection])

    def schedule_due(self, now: datetime, accounts_every: timedelta, limit: int) -> int:
        """Issue the syncs that are due; rows another scheduler holds are skipped."""
        issued = 0
        with translated(), self.engine.begin() as connection:
            raw = connection.connection.driver_connection
            for connection_id, app in raw.execute(
                "SELECT connection_id, app FROM connection_view WHERE deleted_at IS NULL "
                "AND credentials_valid AND active_account_count > 0 "
                "AND (next_sync_at IS NULL OR next_sync_at <= %s) "
                "ORDER BY next_sync_at NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            ).fetchall():
                _record(raw, connection_id, app, CommandType.SYNC_AND_REFRESH, {}, SCHEDULER)
                raw.execute(
                    "UPDATE connection_view SET next_sync_at = %s + "
                    "make_interval(mins => sync_frequency_minutes) WHERE connection_id = %s",
                    (now, connection_id),
                )
                issued += 1
            for connection_id, app in raw.execute(
                "SELECT connection_id, app FROM connection_view WHERE deleted_at IS NULL "
                "AND credentials_valid "
                "AND (next_accounts_sync_at IS NULL OR next_accounts_sync_at <= %s) "
                "ORDER BY next_accounts_sync_at NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            ).fetchall():
                _record(raw, connection_id, app, CommandType.SYNC_ACCOUNTS, {}, SCHEDULER)
                raw.execute(
                    "UPDATE connection_view SET next_accounts_sync_at = %s "
                    "WHERE connection_id = %s",
                    (now + accounts_every, connection_id),
                )
                issued += 1
        return issued

    @contextmanager
    def unpublished(self, limit: int) -> Iterator[RelayBatch | None]:
        with advisory_locked(self.engine, _COMMANDS_LOCK) as raw:
            if raw is None:
                yield None
                return
            rows = raw.execute(
                "SELECT c.id, c.command_id, c.connection_id, v.app, c.command, c.parameters, "
                "c.requested_by, c.requested_at FROM commands c "
                "JOIN connection_view v USING (connection_id) "
                "WHERE c.published_at IS NULL ORDER BY c.id LIMIT %s",
                (limit,),
            ).fetchall()
            yield RelayBatch(
                raw,
                "commands",
                [
                    (
                        row[0],
                        IssuedCommand(
                            row[1], row[2], row[3], CommandType(row[4]), row[5], row[6], row[7]
                        ),
                    )
                    for row in rows
                ],
            )

    def history(self, connection_id: str) -> list[IssuedCommand]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT c.command_id, c.connection_id, v.app, c.command, c.parameters, "
                    "c.requested_by, c.requested_at FROM commands c "
                    "JOIN connection_view v USING (connection_id) "
                    "WHERE c.connection_id = :c ORDER BY c.id"
                ),
                {"c": connection_id},
            ).all()
        return [IssuedCommand(r[0], r[1], r[2], CommandType(r[3]), r[4], r[5], r[6]) for r in rows]


def _record(
    raw: Any,
    connection_id: str,
    app: str,
    command: CommandType,
    parameters: dict[str, str],
    requested_by: str,
    command_id: uuid.UUID | None = None,
) -> IssuedCommand:
    command_id = command_id or uuid.uuid4()
    (requested_at,) = raw.execute(
        "INSERT INTO commands (command_id, connection_id, command, parameters, requested_by) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING requested_at",
        (command_id, connection_id, command.value, Jsonb(parameters), requested_by),
    ).fetchone()
    return IssuedCommand(
        command_id, connection_id, app, command, parameters, requested_by, requested_at
    )
