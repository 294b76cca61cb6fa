"""PostgreSQL persistence of the connection aggregate: one unit of work per batch of events.

The hot path talks to psycopg directly through the SQLAlchemy-managed connection: COPY for the
insert-only tables and one `unnest` statement per table for the rest, so a batch of 1,000 events
costs a handful of round trips instead of thousands.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql

from syncstatus.origin import Origin
from syncstatus.statemachine.connection import (
    Connection,
    MarkKey,
    ParkedEvent,
    Policy,
    ProducerMark,
    Refusal,
    SessionRecord,
)
from syncstatus.statemachine.events import Account, EventType, SessionEvent, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import (
    AccountRow,
    AccountsState,
    ConnectionView,
    CredentialRow,
    project,
)
from syncstatus.store import schema


class ConcurrentUpdate(Exception):
    """Another writer changed a connection this unit of work loaded; retry the whole batch."""


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message refused before it became an event (undecodable, unknown schema, wrong topic)."""

    reason: str
    detail: str
    origin: Origin
    event: SessionEvent | None = None


def event_to_json(event: SessionEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "type": event.type.value,
        "connection_id": event.connection_id,
        "session_id": event.session_id,
        "app": event.app,
        "occurred_at": event.occurred_at.isoformat(),
        "producer": event.producer,
        "error": event.error,
        "substage": event.substage.value if event.substage else None,
        "attributes": dict(event.attributes),
        "accounts": None
        if event.accounts is None
        else [[a.account_id, a.name, a.status] for a in event.accounts],
    }


def event_from_json(data: Mapping[str, Any]) -> SessionEvent:
    return SessionEvent(
        event_id=uuid.UUID(data["event_id"]),
        type=EventType(data["type"]),
        connection_id=data["connection_id"],
        session_id=data["session_id"],
        app=data["app"],
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        producer=data["producer"],
        error=data["error"],
        substage=Substage(data["substage"]) if data["substage"] else None,
        attributes=data["attributes"],
        accounts=None
        if data.get("accounts") is None
        else tuple(Account(*account) for account in data["accounts"]),
    )


_CONNECTION_COLUMNS = (
    "connection_id, app, status, version, session_id, session_opened_at, session_opened_by, "
    "status_changed_at, completed_substages, timed_out_from, holds_credentials, deleted_at, "
    "producer_marks"
)


_UNNEST_CONNECTIONS = (
    "unnest(%b::text[], %b::text[], %b::smallint[], %b::int[], %b::text[], %b::timestamptz[], "
    "%b::text[], %b::timestamptz[], %b::text[], %b::smallint[], %b::boolean[], "
    "%b::timestamptz[], %b::int[]) AS v(connection_id, app, status, version, "
    "session_id, session_opened_at, session_opened_by, status_changed_at, substages, "
    "timed_out_from, holds_credentials, deleted_at, expected)"
)
"""Binary parameters: psycopg escapes every element of a text-format array with a regular
expression, ten times the cost of the whole statement on the server."""
_CONNECTION_VALUES = (
    "connection_id, app, status, version, session_id, session_opened_at, session_opened_by, "
    "status_changed_at, string_to_array(substages, ','), timed_out_from, holds_credentials, "
    "deleted_at, %b::jsonb -> connection_id"
)


class UnitOfWork:
    """One database transaction over the connections of one batch."""

    def __init__(self, connection: sa.Connection) -> None:
        self._raw = connection.connection.driver_connection

    def claim(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record the ids as processed; return those not processed before (the fresh ones)."""
        if not event_ids:
            return set()
        rows = self._raw.execute(
            "INSERT INTO processed_events (event_id) SELECT unnest(%b::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            (list(event_ids),),
        ).fetchall()
        return {row[0] for row in rows}

    def load(self, sessions: Mapping[str, Iterable[str]]) -> dict[str, Connection]:
        """The connections (keys of `sessions`) with their parked events and the sessions they
        left among those named, each locked until the unit of work ends.

        Every writer of a connection holds its lock, so each decides on what the previous one
        committed: otherwise a batch that only parks an event could miss a transition made
        beside it, and that transition would never see the parked event. A transaction-level
        advisory lock on the id covers connections that have no row yet; taking them in key
        order keeps two batches from deadlocking.
        """
        ids = sorted(set(sessions))
        self._raw.execute(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 0) AS k "
            "FROM unnest(%b::text[]) AS id ORDER BY k) AS keys",
            (ids,),
        )
        return self._read(ids, sessions)

    def lock_due(self, now: datetime, policy: Policy, limit: int) -> dict[str, Connection]:
        """Connections whose status outlived its timeout, locked; those another writer holds
        are left for the next sweep, so several sweepers never time out one twice."""
        statuses, cutoffs = [], []
        for status in Status:
            limit_for = policy.timeout_for(status)
            if limit_for is not None:
                statuses.append(int(status))
                cutoffs.append(now - limit_for)
        rows = self._raw.execute(
            "SELECT c.connection_id FROM connections c "
            "JOIN unnest(%b::smallint[], %b::timestamptz[]) AS t(status, cutoff) "
            "ON c.status = t.status AND c.status_changed_at <= t.cutoff "
            "ORDER BY c.status_changed_at LIMIT %s",
            (statuses, cutoffs, limit),
        ).fetchall()
        return self._read(self._try_lock([row[0] for row in rows]))

    def lock_expired_parked(self, cutoff: datetime, limit: int) -> dict[str, Connection]:
        """Connections with a parked event older than the window that no other writer holds."""
        rows = self._raw.execute(
            "SELECT connection_id FROM parked_events WHERE parked_at < %s "
            "GROUP BY connection_id ORDER BY min(parked_at) LIMIT %s",
            (cutoff, limit),
        ).fetchall()
        return self._read(self._try_lock([row[0] for row in rows]))

    def _try_lock(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        rows = self._raw.execute(
            "SELECT id FROM unnest(%b::text[]) AS id "
            "WHERE pg_try_advisory_xact_lock(hashtextextended(id, 0))",
            (ids,),
        ).fetchall()
        return [row[0] for row in rows]

    def _read(
        self, ids: list[str], sessions: Mapping[str, Iterable[str]] | None = None
    ) -> dict[str, Connection]:
        """A connection never seen comes back new."""
        if not ids:
            return {}
        rows = self._raw.execute(
            f"SELECT {_CONNECTION_COLUMNS} FROM connections WHERE connection_id = ANY(%b)",
            (ids,),
        ).fetchall()
        found = {row[0]: _connection_from_row(row) for row in rows}
        loaded = {cid: found.get(cid) or Connection(connection_id=cid) for cid in ids}
        self._attach_parked(loaded)
        self._attach_left_sessions(loaded, sessions or {})
        return loaded

    def _attach_left_sessions(
        self, loaded: dict[str, Connection], sessions: Mapping[str, Iterable[str]]
    ) -> None:
        """The sessions each connection left, among those its events and parked events name."""
        pairs = {
            (cid, sid)
            for cid, connection in loaded.items()
            if connection.status is not None
            for sid in {*sessions.get(cid, ()), *(p.event.session_id for p in connection.parked)}
            if sid != connection.session_id
        }
        if not pairs:
            return
        cids, sids = zip(*pairs, strict=True)
        for cid, sid in self._raw.execute(
            "SELECT s.connection_id, s.session_id FROM connection_sessions s "
            "JOIN unnest(%b::text[], %b::text[]) AS w(connection_id, session_id) "
            "USING (connection_id, session_id)",
            (list(cids), list(sids)),
        ):
            loaded[cid].left_sessions.add(sid)

    def save(
        self,
        connections: Iterable[Connection],
        origins: Mapping[uuid.UUID, Origin] | None = None,
        rejected: Sequence[RejectedMessage] = (),
    ) -> None:
        """Write what the aggregates decided; ConcurrentUpdate if another writer came first.

        A parked event keeps the message it came in, so its dead letter carries the original
        bytes whenever it is refused."""
        everything = list(connections)
        changed = [c for c in everything if c.transitions or c.activities]
        self._write_connections(changed)
        self._write_sessions([s for c in everything for s in c.new_sessions], everything)
        origins = {**self._write_parked(everything, origins or {}), **(origins or {})}
        history = [t for c in changed for t in c.transitions]
        if history:
            with self._raw.cursor().copy(
                "COPY status_history (connection_id, sequence, session_id, app, from_status, "
                "to_status, event_id, event_type, producer, occurred_at, recorded_at, error, "
                "substage) FROM STDIN"
            ) as copy:
                for t in history:
                    copy.write_row(
                        (
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
                        )
                    )
            with self._raw.cursor().copy(
                "COPY outbox (connection_id, sequence) FROM STDIN"
            ) as copy:
                for t in history:
                    copy.write_row((t.connection_id, t.sequence))
        activities = [(c, a) for c in everything for a in c.activities]
        if activities:
            with self._raw.cursor().copy(
                "COPY connection_activity (connection_id, session_id, event_id, event_type, "
                "occurred_at, recorded_at, error, detail) FROM STDIN"
            ) as copy:
                for connection, a in activities:
                    copy.write_row(
                        (
                            connection.connection_id,
                            a.event.session_id,
                            a.event.event_id,
                            a.event.type.value,
                            a.event.occurred_at,
                            a.recorded_at,
                            a.event.error,
                            _activity_detail(a.event),
                        )
                    )
        refusals = [r for c in everything for r in c.refusals]
        self._write_dead_letters(refusals, origins, rejected)

    def update_views(self, connections: Iterable[Connection]) -> None:
        """Keep the connections view in step with what the aggregates applied, in the same
        transaction and in the order they applied it."""
        touched = [c for c in connections if c.applied]
        views = self.load_views(c.connection_id for c in touched)
        self.save_views(
            [view for c in touched if (view := project(views.get(c.connection_id), c.applied))]
        )

    def load_views(self, connection_ids: Iterable[str]) -> dict[str, ConnectionView]:
        ids = sorted(set(connection_ids))
        if not ids:
            return {}
        rows = self._raw.execute(
            f"SELECT {_VIEW_COLUMNS} FROM connection_view WHERE connection_id = ANY(%b)", (ids,)
        ).fetchall()
        views = {row[0]: _view_from_row(row) for row in rows}
        for connection_id, account_id, name, status, created_at, updated_at in self._raw.execute(
            "SELECT connection_id, account_id, name, status, created_at, updated_at "
            "FROM accounts WHERE connection_id = ANY(%b) ORDER BY account_id",
            (list(views),),
        ):
            views[connection_id].accounts[account_id] = AccountRow(
                account_id, name, status, created_at, updated_at
            )
        for connection_id, credential_id, added_at in self._raw.execute(
            "SELECT connection_id, credential_id, added_at FROM credentials "
            "WHERE connection_id = ANY(%b) ORDER BY added_at",
            (list(views),),
        ):
            views[connection_id].credentials.append(CredentialRow(credential_id, added_at))
        return views

    def save_views(self, views: list[ConnectionView]) -> None:
        """Write the projected columns, all rows in one statement; scheduling columns belong to
        commands."""
        if not views:
            return
        self._raw.execute(
            f"INSERT INTO connection_view ({_VIEW_COLUMNS}) SELECT * FROM unnest({_VIEW_ARRAYS}) "
            "ON CONFLICT (connection_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _VIEW_PROJECTED),
            [list(column) for column in zip(*(_view_row(v) for v in views), strict=True)],
        )
        for table, changed, rows in (
            ("accounts", [v for v in views if v.accounts_changed], _account_rows),
            ("credentials", [v for v in views if v.credentials_changed], _credential_rows),
        ):
            if not changed:
                continue
            self._raw.execute(
                f"DELETE FROM {table} WHERE connection_id = ANY(%b)",
                ([v.connection_id for v in changed],),
            )
            columns = _CHILD_COLUMNS[table]
            with self._raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for view in changed:
                    for row in rows(view):
                        copy.write_row(row)

    def _write_connections(self, changed: list[Connection]) -> None:
        """Connections with a new transition or a new producer mark (an activity)."""
        new = [c for c in changed if c.loaded_version == 0 and c.status is not None]
        existing = [c for c in changed if c.loaded_version > 0]
        if new:
            rows = self._raw.execute(
                f"INSERT INTO connections ({_CONNECTION_COLUMNS}) "
                f"SELECT {_CONNECTION_VALUES} "
                f"FROM {_UNNEST_CONNECTIONS} ON CONFLICT DO NOTHING RETURNING 1",
                (_marks_json(new), *_columns(new), [0] * len(new)),
            ).fetchall()
            if len(rows) != len(new):
                raise ConcurrentUpdate("a new connection was created by another writer")
        if existing:
            cur = self._raw.execute(
                "UPDATE connections c SET app = v.app, status = v.status, version = v.version, "
                "session_id = v.session_id, session_opened_at = v.session_opened_at, "
                "session_opened_by = v.session_opened_by, "
                "status_changed_at = v.status_changed_at, "
                "completed_substages = string_to_array(v.substages, ','), "
                "timed_out_from = v.timed_out_from, holds_credentials = v.holds_credentials, "
                "deleted_at = v.deleted_at, producer_marks = %b::jsonb -> v.connection_id "
                f"FROM {_UNNEST_CONNECTIONS} "
                "WHERE c.connection_id = v.connection_id AND c.version = v.expected",
                (
                    _marks_json(existing),
                    *_columns(existing),
                    [c.loaded_version for c in existing],
                ),
            )
            if cur.rowcount != len(existing):
                raise ConcurrentUpdate("a connection was changed by another writer")

    def _write_sessions(self, records: list[SessionRecord], connections: list[Connection]) -> None:
        if not records:
            return
        owner = {id(s): c.connection_id for c in connections for s in c.new_sessions}
        self._raw.cursor().executemany(
            "INSERT INTO connection_sessions (connection_id, session_id, opened_at, opened_by, "
            "sequence) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(owner[id(r)], r.session_id, r.opened_at, r.opened_by, r.sequence) for r in records],
        )

    def _write_parked(
        self, connections: list[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        """Park and unpark; return the messages the unparked events came in."""
        gone = [event_id for c in connections for event_id in c.unparked]
        released: dict[uuid.UUID, Origin] = {}
        if gone:
            rows = self._raw.execute(
                "DELETE FROM parked_events WHERE event_id = ANY(%s) RETURNING event_id, origin",
                (gone,),
            ).fetchall()
            if len(rows) != len(gone):
                raise ConcurrentUpdate("a parked event was released by another writer")
            released = {event_id: Origin.from_json(o) for event_id, o in rows if o is not None}
        parked = [p for c in connections for p in c.newly_parked]
        if parked:
            with self._raw.cursor().copy(
                "COPY parked_events (event_id, connection_id, parked_at, event, origin) FROM STDIN"
            ) as copy:
                for p in parked:
                    origin = origins.get(p.event.event_id)
                    copy.write_row(
                        (
                            p.event.event_id,
                            p.event.connection_id,
                            p.parked_at,
                            Jsonb(event_to_json(p.event)),
                            None if origin is None else Jsonb(origin.to_json()),
                        )
                    )
        return released

    def _write_dead_letters(
        self,
        refusals: list[Refusal],
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
                Jsonb(event_to_json(r.event)),
                _origin_json(origins.get(r.event.event_id)),
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
                Jsonb(event_to_json(m.event)) if m.event else None,
                _origin_json(m.origin),
            )
            for m in rejected
        ]
        if rows:
            with self._raw.cursor() as cur:
                cur.executemany(
                    "INSERT INTO dead_letters (reason, detail, event_id, connection_id, "
                    "event_type, from_status, event, origin) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )

    def _attach_parked(self, loaded: dict[str, Connection]) -> None:
        if not loaded:
            return
        rows = self._raw.execute(
            "SELECT connection_id, parked_at, event FROM parked_events "
            "WHERE connection_id = ANY(%b) ORDER BY arrival",
            (list(loaded),),
        ).fetchall()
        for connection_id, parked_at, event in rows:
            loaded[connection_id].parked.append(ParkedEvent(event_from_json(event), parked_at))


_VIEW_PROJECTED = (
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
)
_VIEW_COLUMNS = ", ".join(("connection_id", "created_at", *_VIEW_PROJECTED))
_VIEW_ARRAYS = ", ".join(
    f"%b::{schema.connection_view.c[name].type.compile(dialect=postgresql.dialect())}[]"
    for name in ("connection_id", "created_at", *_VIEW_PROJECTED)
)
_CHILD_COLUMNS = {
    "accounts": "connection_id, account_id, name, status, created_at, updated_at",
    "credentials": "connection_id, credential_id, added_at",
}


def _view_row(v: ConnectionView) -> tuple[Any, ...]:
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
    )


def _view_from_row(row: Sequence[Any]) -> ConnectionView:
    (
        connection_id,
        created_at,
        app,
        status,
        business_account,
        business_account_id,
        credentials_valid,
        credentials_error,
        accounts_state,
        accounts_error,
        _count,
        _active,
        last_authorized_at,
        last_synced_at,
        reauthorization_failed_at,
        reauthorization_error,
        deleted_at,
    ) = row
    return ConnectionView(
        connection_id=connection_id,
        app=app,
        status=Status(status),
        created_at=created_at,
        business_account=business_account,
        business_account_id=business_account_id,
        credentials_valid=credentials_valid,
        credentials_error=credentials_error,
        accounts_state=AccountsState(accounts_state),
        accounts_error=accounts_error,
        last_authorized_at=last_authorized_at,
        last_synced_at=last_synced_at,
        reauthorization_failed_at=reauthorization_failed_at,
        reauthorization_error=reauthorization_error,
        deleted_at=deleted_at,
    )


def _account_rows(v: ConnectionView) -> Iterator[tuple[Any, ...]]:
    for a in v.accounts.values():
        yield v.connection_id, a.account_id, a.name, a.status, a.created_at, a.updated_at


def _credential_rows(v: ConnectionView) -> Iterator[tuple[Any, ...]]:
    for c in v.credentials:
        yield v.connection_id, c.credential_id, c.added_at


def _activity_detail(event: SessionEvent) -> str | None:
    if event.accounts is None:
        return None
    names = ", ".join(a.name for a in event.accounts)
    return f"{len(event.accounts)} accounts" + (f": {names}" if names else "")


def _origin_json(origin: Origin | None) -> Jsonb | None:
    return None if origin is None else Jsonb(origin.to_json())


def _connection_from_row(row: Sequence[Any]) -> Connection:
    (
        connection_id,
        app,
        status,
        version,
        session_id,
        session_opened_at,
        session_opened_by,
        status_changed_at,
        substages,
        timed_out_from,
        holds_credentials,
        deleted_at,
        marks,
    ) = row
    return Connection(
        connection_id=connection_id,
        app=app,
        status=Status(status),
        version=version,
        loaded_version=version,
        session_id=session_id,
        session_opened_at=session_opened_at,
        session_opened_by=session_opened_by,
        status_changed_at=status_changed_at,
        completed_substages=frozenset(Substage(s) for s in substages),
        timed_out_from=None if timed_out_from is None else Status(timed_out_from),
        holds_credentials=holds_credentials,
        deleted_at=deleted_at,
        producer_marks=dict(_mark_from_json(m) for m in marks),
    )


def _mark_from_json(mark: Sequence[Any]) -> tuple[MarkKey, ProducerMark]:
    producer, of_status, occurred_at, event_type, substage = mark
    return (producer, of_status), ProducerMark(
        datetime.fromisoformat(occurred_at),
        EventType(event_type),
        Substage(substage) if substage else None,
    )


def _marks_json(connections: list[Connection]) -> Jsonb:
    """Every connection's producer marks as one document, keyed by connection id."""
    return Jsonb(
        {
            c.connection_id: [
                [
                    producer,
                    of_status,
                    m.occurred_at.isoformat(),
                    m.event_type.value,
                    _value(m.substage),
                ]
                for (producer, of_status), m in c.producer_marks.items()
            ]
            for c in connections
        }
    )


def _value(substage: Substage | None) -> str | None:
    return substage.value if substage else None


def _columns(connections: list[Connection]) -> tuple[list[Any], ...]:
    return (
        [c.connection_id for c in connections],
        [c.app for c in connections],
        [int(c.status) for c in connections],
        [c.version for c in connections],
        [c.session_id for c in connections],
        [c.session_opened_at for c in connections],
        [c.session_opened_by for c in connections],
        [c.status_changed_at for c in connections],
        [",".join(sorted(s.value for s in c.completed_substages)) for c in connections],
        [None if c.timed_out_from is None else int(c.timed_out_from) for c in connections],
        [c.holds_credentials for c in connections],
        [c.deleted_at for c in connections],
    )


class PostgresStore:
    """Opens units of work on a SQLAlchemy engine (psycopg 3 driver)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Commits when the block ends normally, rolls back when it raises."""
        with self.engine.begin() as connection:
            yield UnitOfWork(connection)
