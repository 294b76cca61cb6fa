"""Read-side queries for people: the CLI and the API read through here, never the hot path.

Every query takes the reader's `scope` (statemachine/workspaces.py) as a required keyword: the
workspace it is confined to, or None for every workspace. A connection outside the scope reads
exactly as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from syncstatus.service.commands import SCHEDULER
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.runs import RunState
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import (
    AccountsState,
    account_status,
    can_extract,
    credentials_label,
    data_source_name,
)
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.rows import RUN_STATE_FIELDS, run_state_from_row
from syncstatus.store.schema import RUN_PARTS
from syncstatus.store.scopes import connection_in, workspace_is

SORTABLE = {
    "data_source": "v.app",
    "business_account": "v.business_account",
    "account_status": "CASE v.accounts_state WHEN 'loading' THEN -2 WHEN 'error' THEN -1 "
    "ELSE v.account_count END",
    "business_account_id": "v.business_account_id",
    "created": "v.created_at",
    "last_authorization": "v.last_authorized_at",
    "source_sync": "v.source_sync_started_at",
    "data_refresh": "v.data_refresh_started_at",
}
"""Columns of the Connected sources list a person may sort by (not Status, not Actions); the
two card statuses sort by when they last started."""


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """One line of the Connected sources list."""

    connection_id: str
    data_source: str
    data_source_name: str
    business_account: str | None
    business_account_id: str | None
    credentials: str | None
    credentials_error: str | None
    account_status: str
    active_accounts: int
    status_code: int
    status_name: str
    stage: str
    is_error: bool
    created: datetime
    last_authorization: datetime | None
    last_sync: datetime | None
    reauthorization_failed_at: datetime | None
    reauthorization_error: str | None
    sync_frequency_minutes: int
    can_extract: bool
    status_error: str | None
    status_failure_class: str | None
    accounts_error: str | None
    source_sync: RunState
    data_refresh: RunState
    workspace_id: str


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ConnectionSummary]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class AccountLine:
    account_id: str
    name: str
    status: str
    created: datetime
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class CredentialLine:
    credential_id: str
    role: str
    added: datetime


@dataclass(frozen=True, slots=True)
class ConnectionDetail:
    summary: ConnectionSummary
    accounts: list[AccountLine]
    credentials: list[CredentialLine]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A status change or an activity (account events), as the history tab lists them."""

    kind: str
    session_id: str
    event_type: str
    event_id: str
    occurred_at: datetime
    recorded_at: datetime
    sequence: int | None
    from_status: int | None
    to_status: int | None
    error: str | None
    detail: str | None
    requested_by: str | None = None
    """Who issued the command that caused it (a Delete): its token's name; None for events."""


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A command a person issued on a connection, with who: the audit part of its history."""

    command_id: str
    connection_id: str
    command: str
    parameters: dict[str, str]
    requested_by: str
    requested_at: datetime
    workspace_id: str


@dataclass(frozen=True, slots=True)
class WorkspaceLine:
    """A workspace a reader may see, and how many connections it lists (deleted ones aside)."""

    workspace_id: str
    connections: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    started_at: datetime
    ended_at: datetime | None
    final_status: int
    duration_s: float | None
    errors: int


@dataclass(frozen=True, slots=True)
class SessionDetail:
    summary: SessionSummary
    entries: list[HistoryEntry]


_SUMMARY = (
    "SELECT v.connection_id, v.app, v.business_account, v.business_account_id, "
    "v.credentials_valid, v.credentials_error, v.accounts_state, v.account_count, "
    "v.active_account_count, v.status, "
    "v.created_at, v.last_authorized_at, v.last_synced_at, v.reauthorization_failed_at, "
    "v.reauthorization_error, v.sync_frequency_minutes, v.status_error, v.accounts_error, "
    + ", ".join(f"v.{part}_{name}" for part in RUN_PARTS for name in RUN_STATE_FIELDS)
    + ", v.status_failure_class, v.workspace_id FROM connection_view v"
)


def _summary(row: sa.Row, app_names: Mapping[str, str]) -> ConnectionSummary:
    (
        connection_id,
        app,
        business_account,
        business_account_id,
        valid,
        error,
        accounts_state,
        count,
        active,
        status,
        created,
        last_auth,
        last_sync,
        reauthorization_failed_at,
        reauthorization_error,
        frequency,
        status_error,
        accounts_error,
    ) = row[:18]
    return ConnectionSummary(
        connection_id=connection_id,
        data_source=app,
        data_source_name=data_source_name(app, app_names),
        business_account=business_account,
        business_account_id=business_account_id,
        credentials=credentials_label(valid),
        credentials_error=error,
        account_status=account_status(AccountsState(accounts_state), count),
        active_accounts=active,
        status_code=status,
        status_name=Status(status).label,
        stage=Status(status).stage.label,
        is_error=Status(status).is_error,
        created=created,
        last_authorization=last_auth,
        last_sync=last_sync,
        reauthorization_failed_at=reauthorization_failed_at,
        reauthorization_error=reauthorization_error,
        sync_frequency_minutes=frequency,
        can_extract=can_extract(valid, active, None),
        status_error=status_error,
        accounts_error=accounts_error,
        source_sync=run_state_from_row(row[18:23]),
        data_refresh=run_state_from_row(row[23:28]),
        status_failure_class=row[28],
        workspace_id=row[29],
    )


class ConnectionQueries:
    """The connections view, read for people (API and dashboard)."""

    def __init__(self, engine: sa.Engine, app_names: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        self.app_names = dict(app_names or {})

    def list(
        self,
        search: str | None = None,
        sort: str = "created",
        descending: bool = True,
        page: int = 1,
        page_size: int = 50,
        workspace: str | None = None,
        *,
        scope: Scope,
    ) -> Page:
        """Listed (not deleted) connections, searched case-insensitively by data source (its
        id or its display name, as people write it) and by business account, of `workspace`
        when one is named; within `scope` either way (a workspace outside it lists nothing)."""
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}; one of {', '.join(SORTABLE)}")
        confined, params = workspace_is("v.workspace_id", scope)
        where = "WHERE v.deleted_at IS NULL" + confined
        params.update(limit=page_size, offset=(page - 1) * page_size)
        if workspace is not None:
            where += " AND v.workspace_id = :workspace"
            params["workspace"] = workspace
        if search:
            where += (
                " AND (v.app ILIKE :search ESCAPE '\\' OR v.business_account ILIKE :search "
                "ESCAPE '\\' OR v.app = ANY(:named))"
            )
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["search"] = f"%{escaped}%"
            params["named"] = self._apps_named(search)
        order = f"{SORTABLE[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, v.connection_id"
        with self.engine.connect() as connection:
            total = connection.execute(
                sa.text(f"SELECT count(*) FROM connection_view v {where}"), params
            ).scalar_one()
            rows = connection.execute(
                sa.text(f"{_SUMMARY} {where} ORDER BY {order} LIMIT :limit OFFSET :offset"),
                params,
            ).all()
        return Page([_summary(r, self.app_names) for r in rows], total, page, page_size)

    def _apps_named(self, search: str) -> list[str]:
        with self.engine.connect() as connection:
            apps = connection.execute(
                sa.text("SELECT DISTINCT app FROM connection_view WHERE deleted_at IS NULL")
            ).scalars()
            return [a for a in apps if search.lower() in self.name_of(a).lower()]

    def name_of(self, app: str) -> str:
        return data_source_name(app, self.app_names)

    def workspaces(self, *, scope: Scope) -> list[WorkspaceLine]:
        """The workspaces of stored connections within `scope`, by id, each with how many
        connections it lists; a scoped reader always sees its own, if empty with 0."""
        confined, params = workspace_is("workspace_id", scope)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT workspace_id, count(*) FILTER (WHERE deleted_at IS NULL) "
                    f"FROM connection_view WHERE true{confined} GROUP BY 1 ORDER BY 1"
                ),
                params,
            ).all()
        found = [WorkspaceLine(*row) for row in rows]
        if scope is not None and not found:
            found = [WorkspaceLine(scope, 0)]
        return found

    def connection(self, connection_id: str, *, scope: Scope) -> ConnectionDetail | None:
        confined, params = workspace_is("v.workspace_id", scope)
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.text(
                    f"{_SUMMARY} WHERE v.connection_id = :c AND v.deleted_at IS NULL{confined}"
                ),
                {"c": connection_id, **params},
            ).first()
            if row is None:
                return None
            accounts = connection.execute(
                sa.text(
                    "SELECT account_id, name, status, created_at, updated_at FROM accounts "
                    "WHERE connection_id = :c ORDER BY name, account_id"
                ),
                {"c": connection_id},
            ).all()
            credentials = connection.execute(
                sa.text(
                    "SELECT credential_id, added_at FROM credentials "
                    "WHERE connection_id = :c ORDER BY added_at DESC"
                ),
                {"c": connection_id},
            ).all()
        return ConnectionDetail(
            _summary(row, self.app_names),
            [AccountLine(*a) for a in accounts],
            [
                CredentialLine(c[0], "main" if i == 0 else "secondary", c[1])
                for i, c in enumerate(credentials)
            ],
        )

    def history(
        self, connection_id: str, session_id: str | None = None, *, scope: Scope
    ) -> list[HistoryEntry]:
        """Status changes and activities, oldest first (kept for audit after a delete); the
        change a Delete made names who issued it."""
        session = " AND session_id = :s" if session_id else ""
        changes, params = workspace_is("h.workspace_id", scope)
        activities, _ = connection_in("a.connection_id", scope)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT 'status_change', session_id, event_type, CAST(event_id AS text), "
                    "occurred_at, recorded_at, sequence, from_status, to_status, error, "
                    "substage, c.requested_by, recorded_at, sequence AS tiebreak "
                    "FROM status_history h LEFT JOIN commands c ON c.command_id = h.event_id "
                    "AND c.connection_id = h.connection_id AND c.command = :delete "
                    f"WHERE h.connection_id = :c{session}{changes} "
                    "UNION ALL SELECT 'activity', session_id, event_type, "
                    "CAST(event_id AS text), occurred_at, recorded_at, NULL, NULL, NULL, error, "
                    "detail, NULL, recorded_at, id FROM connection_activity a WHERE "
                    f"a.connection_id = :c{session}{activities} ORDER BY 13, 1 DESC, 14"
                ),
                {
                    "c": connection_id,
                    "s": session_id,
                    "delete": CommandType.DELETE.value,
                    **params,
                },
            ).all()
        return [HistoryEntry(*row[:12]) for row in rows]

    def commands(self, connection_id: str, *, scope: Scope) -> list[CommandLine]:
        """The commands people issued on the connection, oldest first, with the name of the
        token each came with (the scheduler's are left out: retention prunes them)."""
        confined, params = workspace_is("workspace_id", scope)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT CAST(command_id AS text), connection_id, command, parameters, "
                    "requested_by, requested_at, workspace_id FROM commands "
                    f"WHERE connection_id = :c AND requested_by <> :scheduler{confined} "
                    "ORDER BY id"
                ),
                {"c": connection_id, "scheduler": SCHEDULER, **params},
            ).all()
        return [CommandLine(*row) for row in rows]

    def sessions(self, connection_id: str, *, scope: Scope) -> list[SessionSummary]:
        """Each data-sharing session (one with status changes; account syncs are activities in
        the history): its start, end, final status, duration and errors, newest first."""
        grouped = self._by_session(connection_id, scope)
        return [self._session(entries) for entries in grouped.values()][::-1]

    def session(self, connection_id: str, session_id: str, *, scope: Scope) -> SessionDetail | None:
        entries = self.history(connection_id, session_id, scope=scope)
        changes = [e for e in entries if e.kind == "status_change"]
        if not changes:
            return None
        return SessionDetail(self._session(entries), entries)

    def _by_session(self, connection_id: str, scope: Scope) -> dict[str, list[HistoryEntry]]:
        grouped: dict[str, list[HistoryEntry]] = {}
        for entry in self.history(connection_id, scope=scope):
            if entry.kind == "status_change":
                grouped.setdefault(entry.session_id, []).append(entry)
        return grouped

    @staticmethod
    def _session(entries: list[HistoryEntry]) -> SessionSummary:
        changes = [e for e in entries if e.kind == "status_change"]
        final = Status(changes[-1].to_status)
        # When it happened, not when it was recorded: a backlog must not shorten a session.
        # Not first and last by sequence: a released parked event may have happened earlier.
        started = min(e.occurred_at for e in changes)
        ended = max(e.occurred_at for e in changes)
        return SessionSummary(
            session_id=changes[0].session_id,
            started_at=started,
            ended_at=ended if final.ends_session else None,
            final_status=int(final),
            duration_s=(ended - started).total_seconds() if final.ends_session else None,
            errors=sum(1 for e in changes if e.to_status and Status(e.to_status).is_error),
        )
