"""The commands repository: commands people and the scheduler issue, and the view columns that
schedule them. The relay reads unpublished commands through store/outbox.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from syncstatus.service.ports import Due
from syncstatus.statemachine.commands import IssuedCommand
from syncstatus.statemachine.view import ConnectionView
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.views import PostgresViews


class PostgresCommands:
    """The commands repository of a unit of work."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def lock_view(self, connection_id: str, scope: Scope) -> ConnectionView | None:
        """Outside `scope` is the same None as no such connection: a command of another
        workspace's connection is a 404 like an unknown one, so ids do not leak."""
        locked = self._raw.execute(
            "SELECT 1 FROM connection_view WHERE connection_id = %s AND deleted_at IS NULL "
            "AND (%s::text IS NULL OR workspace_id = %s::text) FOR UPDATE",
            (connection_id, scope, scope),
        ).fetchone()
        return (
            None
            if locked is None
            else PostgresViews(self._raw).load([connection_id])[connection_id]
        )

    def add(self, command: IssuedCommand) -> None:
        self._raw.execute(
            "INSERT INTO commands (command_id, connection_id, command, parameters, requested_by, "
            "requested_at, workspace_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                command.command_id,
                command.connection_id,
                command.command.value,
                Jsonb(dict(command.parameters)),
                command.requested_by,
                command.requested_at,
                command.workspace_id,
            ),
        )

    def set_sync_frequency(self, connection_id: str, minutes: int) -> None:
        self._raw.execute(
            "UPDATE connection_view SET sync_frequency_minutes = %s, next_sync_at = "
            "COALESCE(last_synced_at, now()) + make_interval(mins => %s) "
            "WHERE connection_id = %s",
            (minutes, minutes, connection_id),
        )

    def lock_due_syncs(self, now: datetime, limit: int) -> list[Due]:
        return self._lock_due("can_extract AND NOT sync_in_progress", "next_sync_at", now, limit)

    def lock_due_account_syncs(self, now: datetime, limit: int) -> list[Due]:
        return self._lock_due("can_sync_accounts", "next_accounts_sync_at", now, limit)

    def schedule_next_sync(self, connection_id: str, now: datetime) -> None:
        self._raw.execute(
            "UPDATE connection_view SET next_sync_at = %s + "
            "make_interval(mins => sync_frequency_minutes) WHERE connection_id = %s",
            (now, connection_id),
        )

    def schedule_next_account_sync(self, connection_id: str, at: datetime) -> None:
        self._raw.execute(
            "UPDATE connection_view SET next_accounts_sync_at = %s WHERE connection_id = %s",
            (at, connection_id),
        )

    def _lock_due(self, rule: str, due_at: str, now: datetime, limit: int) -> list[Due]:
        """`rule` reads columns the projection writes from the domain's rules of those names."""
        rows = self._raw.execute(
            f"SELECT connection_id, app, workspace_id FROM connection_view WHERE {rule} "
            f"AND ({due_at} IS NULL OR {due_at} <= %s) "
            f"ORDER BY {due_at} NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        ).fetchall()
        return [Due(*row) for row in rows]
