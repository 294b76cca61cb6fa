"""Rows <-> domain objects, each conversion once: connections, producer marks, views, their
accounts and credentials, events and origins kept as JSON, and the status_history columns."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from enum import Enum
from functools import cache, partial
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql

from syncstatus.service.inbound import Origin
from syncstatus.statemachine.connection import Connection, MarkKey, ProducerMark, Transition
from syncstatus.statemachine.events import (
    EventType,
    Failure,
    FailureClass,
    SessionEvent,
    Substage,
)
from syncstatus.statemachine.runs import RunOutcome, RunState
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import AccountRow, AccountsState, ConnectionView, CredentialRow
from syncstatus.store import schema

E = TypeVar("E", bound=Enum)


def _member_of(enum: type[E]) -> Callable[[Any], E]:
    """A stored value's enum member by dict lookup: the enum's own call costs several times
    more, and loading a batch makes about eight per event."""
    return {member.value: member for member in enum}.__getitem__


_status = _member_of(Status)
_substage = _member_of(Substage)
_event_type = _member_of(EventType)
_failure_class = _member_of(FailureClass)
_run_outcome = _member_of(RunOutcome)
_accounts_state = _member_of(AccountsState)

HISTORY_COLUMNS = (
    "connection_id",
    "sequence",
    "session_id",
    "app",
    "from_status",
    "to_status",
    "event_id",
    "event_type",
    "producer",
    "occurred_at",
    "recorded_at",
    "error",
    "substage",
    "failure_class",
    "failure_retryable",
    "failure_code",
    "workspace_id",
)
"""status_history as a Transition holds it, in this order wherever it is written or read."""


def history_row(t: Transition) -> tuple[Any, ...]:
    return (
        t.connection_id,
        t.sequence,
        t.session_id,
        t.app,
        None if t.from_status is None else int(t.from_status),
        int(t.to_status),
        t.event_id,
        t.event_type.value,
        t.producer,
        t.occurred_at,
        t.recorded_at,
        t.error,
        t.substage.value if t.substage else None,
        t.failure.failure_class.value if t.failure else None,
        t.failure.retryable if t.failure else None,
        t.failure.code if t.failure else None,
        t.workspace_id,
    )


def transition_from_row(row: Sequence[Any]) -> Transition:
    (cid, sequence, sid, app, from_status, to_status, event_id, event_type, producer) = row[:9]
    occurred_at, recorded_at, error, substage, failure_class, retryable, code = row[9:16]
    workspace_id = row[16]
    return Transition(
        connection_id=cid,
        sequence=sequence,
        session_id=sid,
        app=app,
        from_status=None if from_status is None else _status(from_status),
        to_status=_status(to_status),
        event_id=event_id,
        event_type=_event_type(event_type),
        producer=producer,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        error=error,
        substage=_substage(substage) if substage else None,
        failure=None
        if failure_class is None
        else Failure(_failure_class(failure_class), retryable, code),
        workspace_id=workspace_id,
    )


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


_dumps = partial(json.dumps, default=_json_default)


def event_json(event: SessionEvent) -> Jsonb:
    return Jsonb(event.to_record(), dumps=_dumps)


def event_from_json(data: dict[str, Any]) -> SessionEvent:
    return SessionEvent.from_record(data)


def origin_json(origin: Origin | None) -> Jsonb | None:
    return None if origin is None else Jsonb(origin.to_json())


CONNECTION_COLUMNS = (
    "connection_id, app, status, version, session_id, session_opened_at, session_opened_by, "
    "status_changed_at, completed_substages, timed_out_from, holds_credentials, deleted_at, "
    "producer_marks, workspace_id"
)


def connection_from_row(row: Sequence[Any]) -> Connection:
    (cid, app, status, version, session_id, opened_at, opened_by, changed_at) = row[:8]
    substages, timed_out_from, holds_credentials, deleted_at, marks, workspace_id = row[8:14]
    return Connection(
        connection_id=cid,
        app=app,
        workspace_id=workspace_id,
        status=_status(status),
        version=version,
        loaded_version=version,
        session_id=session_id,
        session_opened_at=opened_at,
        session_opened_by=opened_by,
        status_changed_at=changed_at,
        completed_substages=frozenset(_substage(s) for s in substages),
        timed_out_from=None if timed_out_from is None else _status(timed_out_from),
        holds_credentials=holds_credentials,
        deleted_at=deleted_at,
        producer_marks=dict(_mark_from_json(m) for m in marks),
    )


def connection_row(c: Connection) -> tuple[Any, ...]:
    """A connection's values in CONNECTION_COLUMNS order."""
    return (
        c.connection_id,
        c.app,
        int(c.status),
        c.version,
        c.session_id,
        c.session_opened_at,
        c.session_opened_by,
        c.status_changed_at,
        sorted(s.value for s in c.completed_substages),
        None if c.timed_out_from is None else int(c.timed_out_from),
        c.holds_credentials,
        c.deleted_at,
        Jsonb(
            [
                [
                    producer,
                    of_status,
                    m.occurred_at.isoformat(),
                    m.event_type.value,
                    m.substage.value if m.substage else None,
                ]
                for (producer, of_status), m in c.producer_marks.items()
            ]
        ),
        c.workspace_id,
    )


def _mark_from_json(mark: Sequence[Any]) -> tuple[MarkKey, ProducerMark]:
    producer, of_status, occurred_at, event_type, substage = mark
    return (producer, of_status), ProducerMark(
        datetime.fromisoformat(occurred_at),
        _event_type(event_type),
        _substage(substage) if substage else None,
    )


RUN_STATE_FIELDS = ("state", "started_at", "succeeded_at", "failed_at", "error")
"""A card status as RunState holds it, in this order in connection_view (after its part)."""

VIEW_PROJECTED = (
    "app",
    "status",
    "business_account",
    "business_account_id",
    "credentials_valid",
    "credentials_error",
    "accounts_state",
    "accounts_error",
    "account_count",
    "active_account_count",
    "last_authorized_at",
    "last_synced_at",
    "reauthorization_failed_at",
    "reauthorization_error",
    "deleted_at",
    "can_extract",
    "can_sync_accounts",
    "sync_in_progress",
    "status_error",
    *(f"{part}_{name}" for part in schema.RUN_PARTS for name in RUN_STATE_FIELDS),
    "status_failure_class",
    "workspace_id",
)
"""The connection_view columns the projection owns; scheduling columns belong to commands.
can_extract, can_sync_accounts and sync_in_progress are the domain's rules, stored so the
scheduler can select by them."""
VIEW_COLUMNS = ", ".join(("connection_id", "created_at", *VIEW_PROJECTED))
CHILD_COLUMNS = {
    "accounts": "connection_id, account_id, name, status, created_at, updated_at",
    "credentials": "connection_id, credential_id, added_at",
}


def view_row(v: ConnectionView) -> tuple[Any, ...]:
    return (
        v.connection_id,
        v.created_at,
        v.app,
        int(v.status),
        v.business_account,
        v.business_account_id,
        v.credentials_valid,
        v.credentials_error,
        v.accounts_state.value,
        v.accounts_error,
        len(v.accounts),
        v.active_accounts,
        v.last_authorized_at,
        v.last_synced_at,
        v.reauthorization_failed_at,
        v.reauthorization_error,
        v.deleted_at,
        v.can_extract,
        v.can_sync_accounts,
        v.sync_in_progress,
        v.status_error,
        *run_state_row(v.source_sync),
        *run_state_row(v.data_refresh),
        v.status_failure_class,
        v.workspace_id,
    )


def run_state_row(run: RunState) -> tuple[Any, ...]:
    return (
        None if run.state is None else run.state.value,
        run.started_at,
        run.succeeded_at,
        run.failed_at,
        run.error,
    )


def run_state_from_row(row: Sequence[Any]) -> RunState:
    state, started_at, succeeded_at, failed_at, error = row
    return RunState(
        None if state is None else _run_outcome(state), started_at, succeeded_at, failed_at, error
    )


def view_from_row(row: Sequence[Any]) -> ConnectionView:
    (cid, created_at, app, status, business_account, business_account_id) = row[:6]
    credentials_valid, credentials_error, accounts_state, accounts_error = row[6:10]
    authorized_at, synced_at, reauth_failed_at, reauth_error, deleted_at = row[12:17]
    status_error, source_sync, data_refresh = row[20], row[21:26], row[26:31]
    status_failure_class, workspace_id = row[31:33]
    return ConnectionView(
        connection_id=cid,
        app=app,
        status=_status(status),
        created_at=created_at,
        business_account=business_account,
        business_account_id=business_account_id,
        credentials_valid=credentials_valid,
        credentials_error=credentials_error,
        accounts_state=_accounts_state(accounts_state),
        accounts_error=accounts_error,
        last_authorized_at=authorized_at,
        last_synced_at=synced_at,
        reauthorization_failed_at=reauth_failed_at,
        reauthorization_error=reauth_error,
        deleted_at=deleted_at,
        status_error=status_error,
        source_sync=run_state_from_row(source_sync),
        data_refresh=run_state_from_row(data_refresh),
        status_failure_class=status_failure_class,
        workspace_id=workspace_id,
    )


def account_rows(v: ConnectionView) -> Iterator[tuple[Any, ...]]:
    for a in v.accounts.values():
        yield v.connection_id, a.account_id, a.name, a.status, a.created_at, a.updated_at


def credential_rows(v: ConnectionView) -> Iterator[tuple[Any, ...]]:
    for c in v.credentials:
        yield v.connection_id, c.credential_id, c.added_at


def account_from_row(row: Sequence[Any]) -> AccountRow:
    return AccountRow(*row)


def credential_from_row(row: Sequence[Any]) -> CredentialRow:
    return CredentialRow(*row)


def activity_detail(event: SessionEvent) -> str | None:
    if event.accounts is None:
        return None
    names = ", ".join(a.name for a in event.accounts)
    return f"{len(event.accounts)} accounts" + (f": {names}" if names else "")


@cache
def binary_copy(target: str) -> tuple[str, tuple[str, ...]]:
    """`table (column, ...)` -> the statement copying into it in binary, and the columns'
    types, read from the schema so that a column added there is copied with its type."""
    table, _, columns = target.partition(" ")
    names = [name.strip() for name in columns.strip("()").split(",")]
    return f"COPY {target} FROM STDIN (FORMAT BINARY)", column_types(table, names)


def column_types(table: str, columns: Iterable[str]) -> tuple[str, ...]:
    """The PostgreSQL type of each column, as COPY's `set_types` takes it."""
    return tuple(
        schema.metadata.tables[table].c[name].type.compile(dialect=postgresql.dialect()).lower()
        for name in columns
    )
