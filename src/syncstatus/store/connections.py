"""The connection repository: aggregates loaded under lock and what they decided written back.

The hot path talks to psycopg directly through the SQLAlchemy-managed connection: COPY for the
insert-only tables, and for the rest COPY into a staging table and one statement from it
(`store.staging`), so a batch of 1,000 events costs a handful of round trips instead of
thousands.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from syncstatus.service.inbound import Origin
from syncstatus.service.ports import ConcurrentUpdate
from syncstatus.statemachine.connection import Connection, ParkedEvent, Policy, SessionRecord
from syncstatus.statemachine.statuses import Status
from syncstatus.store.rows import (
    CONNECTION_COLUMNS,
    HISTORY_COLUMNS,
    activity_detail,
    binary_copy,
    connection_from_row,
    connection_row,
    event_from_json,
    event_json,
    history_row,
    origin_json,
)
from syncstatus.store.staging import stage, staging

_STAGED_CONNECTIONS = staging("connections", CONNECTION_COLUMNS, (("expected", "version"),))
"""Each changed connection's row and the version it was loaded at."""
_UPDATED = ", ".join(
    f"{name} = v.{name}"
    for name in _STAGED_CONNECTIONS.columns
    if name not in ("connection_id", "workspace_id", "expected")
)
_ACTIVITY_COLUMNS = (
    "connection_id, session_id, event_id, event_type, occurred_at, recorded_at, error, detail"
)


class PostgresConnections:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def load(self, sessions: Mapping[str, Iterable[str]]) -> dict[str, Connection]:
        """Every writer of a connection holds its lock, so each decides on what the previous
        one committed: otherwise a batch that only parks an event could miss a transition made
        beside it, and that transition would never see the parked event. A transaction-level
        advisory lock on the id covers connections that have no row yet; taking them in key
        order keeps two batches from deadlocking."""
        ids = sorted(set(sessions))
        self._raw.execute(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 0) AS k "
            "FROM unnest(%b::text[]) AS id ORDER BY k) AS keys",
            (ids,),
        )
        return self._read(ids, sessions)

    def lock_due(self, now: datetime, policy: Policy, limit: int) -> dict[str, Connection]:
        """Those another writer holds are left for the next sweep, so several sweepers never
        time out one twice."""
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
        rows = self._raw.execute(
            "SELECT connection_id FROM parked_events WHERE parked_at < %s "
            "GROUP BY connection_id ORDER BY min(parked_at) LIMIT %s",
            (cutoff, limit),
        ).fetchall()
        return self._read(self._try_lock([row[0] for row in rows]))

    def save(
        self, connections: Iterable[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        """A parked event keeps the message it came in, so its dead letter carries the
        original bytes whenever it is refused."""
        everything = list(connections)
        changed = [c for c in everything if c.applied]
        self._write_connections(changed)
        self._write_sessions(everything)
        released = self._write_parked(everything, origins)
        transitions = [t for c in changed for t in c.transitions]
        self._copy(
            f"status_history ({', '.join(HISTORY_COLUMNS)})", [history_row(t) for t in transitions]
        )
        self._copy(
            "outbox (connection_id, sequence)", [(t.connection_id, t.sequence) for t in transitions]
        )
        self._copy(
            f"connection_activity ({_ACTIVITY_COLUMNS})",
            [
                (
                    c.connection_id,
                    a.event.session_id,
                    a.event.event_id,
                    a.event.type.value,
                    a.event.occurred_at,
                    a.recorded_at,
                    a.event.error,
                    activity_detail(a.event),
                )
                for c in everything
                for a in c.activities
            ],
        )
        return released

    def _copy(self, target: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """In binary, each value dumped by its column's type: the text format costs three
        times the client CPU per row (`python -m bench.engine --statements`)."""
        if not rows:
            return
        copy_statement, types = binary_copy(target)
        with self._raw.cursor().copy(copy_statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

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
        if not ids:
            return {}
        rows = self._raw.execute(
            f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE connection_id = ANY(%b)",
            (ids,),
        ).fetchall()
        found = {row[0]: connection_from_row(row) for row in rows}
        loaded = {cid: found.get(cid) or Connection(connection_id=cid) for cid in ids}
        self._attach_parked(loaded)
        self._attach_left_sessions(loaded, sessions or {})
        return loaded

    def _attach_parked(self, loaded: dict[str, Connection]) -> None:
        rows = self._raw.execute(
            "SELECT connection_id, parked_at, event FROM parked_events "
            "WHERE connection_id = ANY(%b) ORDER BY arrival",
            (list(loaded),),
        ).fetchall()
        for connection_id, parked_at, event in rows:
            loaded[connection_id].parked.append(ParkedEvent(event_from_json(event), parked_at))

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

    def _write_connections(self, changed: list[Connection]) -> None:
        """Connections with a new transition or a new producer mark (an activity)."""
        new = [c for c in changed if c.loaded_version == 0 and c.status is not None]
        existing = [c for c in changed if c.loaded_version > 0]
        if new:
            staged = stage(self._raw, _STAGED_CONNECTIONS, [(*connection_row(c), 0) for c in new])
            rows = self._raw.execute(
                f"INSERT INTO connections ({CONNECTION_COLUMNS}) SELECT {CONNECTION_COLUMNS} "
                f"FROM {staged} ON CONFLICT DO NOTHING RETURNING 1"
            ).fetchall()
            if len(rows) != len(new):
                raise ConcurrentUpdate("a new connection was created by another writer")
        if existing:
            staged = stage(
                self._raw,
                _STAGED_CONNECTIONS,
                [(*connection_row(c), c.loaded_version) for c in existing],
            )
            cur = self._raw.execute(
                f"UPDATE connections c SET {_UPDATED} FROM {staged} v "
                "WHERE c.connection_id = v.connection_id AND c.version = v.expected"
            )
            if cur.rowcount != len(existing):
                raise ConcurrentUpdate("a connection was changed by another writer")

    def _write_sessions(self, connections: list[Connection]) -> None:
        records: list[tuple[str, SessionRecord]] = [
            (c.connection_id, s) for c in connections for s in c.new_sessions
        ]
        if not records:
            return
        self._raw.cursor().executemany(
            "INSERT INTO connection_sessions (connection_id, session_id, opened_at, opened_by, "
            "sequence) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(cid, r.session_id, r.opened_at, r.opened_by, r.sequence) for cid, r in records],
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
        self._copy(
            "parked_events (event_id, connection_id, parked_at, event, origin)",
            [
                (
                    p.event.event_id,
                    p.event.connection_id,
                    p.parked_at,
                    event_json(p.event),
                    origin_json(origins.get(p.event.event_id)),
                )
                for c in connections
                for p in c.newly_parked
            ],
        )
        return released
