"""The ceiling: the same rows as the engine, written with the fastest statements the stack has.

`bench.engine` compares the status engine with this loop, in the same run on the same events,
so its ratio says how much of the engine's cost is the stack's and how much is ours. Per batch,
with psycopg 3 and fastavro only and no domain object on the hot path:

    fastavro schemaless_reader (after a single-object header check)
    one INSERT … unnest … ON CONFLICT DO NOTHING RETURNING: the idempotency claim (a COPY
        would abort the whole batch on one duplicate)
    one SELECT … FOR UPDATE of the connections and their view rows, joined
    decide with dicts derived once from the machine's table and the domain's rules
    binary COPY into connection_sessions, status_history and outbox (insert-only)
    for connections and connection_view each: binary COPY into a temporary staging table,
        then one INSERT … SELECT … ON CONFLICT DO UPDATE (an `unnest` of array parameters
        costs twice the client CPU per row: psycopg dumps arrays element by element)
    commit; then fastavro schemaless_writer for each StatusChanged record

What it leaves out, so that nobody reads its rate as reachable at no cost: the input limits
(`EventLimits.check`), the per-connection advisory locks that also cover connections without a
row yet (row locks cover the others), retries, parking, refusals and dead letters. It covers
the events of whole sessions applied in order, as the benchmark's stream has them, and raises
`Unsupported` on anything else instead of writing rows the engine would not: the bench then
checks, table by table, that both wrote the same rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from io import BytesIO
from itertools import product
from typing import Any

import psycopg
from fastavro import schemaless_reader, schemaless_writer

from syncstatus.schemas.codec import (
    SESSION_EVENT,
    STATUS_CHANGED,
    SingleObjectCodec,
    load_schema,
)
from syncstatus.statemachine.credentials import credentials_after
from syncstatus.statemachine.events import ALL_SUBSTAGES, EventType, Substage
from syncstatus.statemachine.machine import GuardContext
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.records import Transition
from syncstatus.statemachine.runs import Part, RunState
from syncstatus.statemachine.statuses import Stage, Status
from syncstatus.statemachine.table import TRANSITIONS
from syncstatus.statemachine.view import ConnectionView
from syncstatus.store.rows import VIEW_COLUMNS, VIEW_PROJECTED, column_types, view_row

E = EventType
SCOPE = frozenset(
    e.value
    for e in EventType
    if e.changes_status
    and e
    not in (
        E.AUTHORIZATION_FAILED,
        E.AUTHORIZATION_TIMED_OUT,
        E.DEAUTHORIZED,
        E.DISCONNECTED,
        E.CONNECTION_DELETED,
        E.STAGE_TIMED_OUT,
    )
)
"""The event types the ceiling applies: a status, the card's run columns and, for a login, valid
credentials are all they change. Those with further rules (credentials lost, deletion,
timeouts, accounts) are left to the engine: the ceiling raises `Unsupported` on them."""

VIEW_NAMES = tuple(name.strip() for name in VIEW_COLUMNS.split(","))
_VIEW_TYPES = column_types("connection_view", VIEW_NAMES)
OPENERS = frozenset(e.value for e in TRANSITIONS.session_openers)
AUTHORIZATION_STARTED = E.AUTHORIZATION_STARTED.value
AUTHORIZATION_SUCCEEDED = E.AUTHORIZATION_SUCCEEDED.value
SYNC_COMPLETED = E.SYNC_COMPLETED.value
PROCESSING_STARTED = E.PROCESSING_STARTED.value
SUBSTAGE_COMPLETED = E.PROCESSING_SUBSTAGE_COMPLETED.value
MAX_PRODUCER_MARKS = 64
_PROBE_AT = datetime(2000, 1, 1, tzinfo=UTC)
_UNSET = object()

_CLAIM = (
    "INSERT INTO processed_events (event_id) SELECT unnest(%b::uuid[]) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
_CONNECTION_COLUMNS = (
    "connection_id, app, status, version, session_id, status_changed_at, completed_substages, "
    "timed_out_from, session_opened_at, session_opened_by, holds_credentials, deleted_at, "
    "producer_marks"
)
_LOAD = (
    "SELECT "
    + ", ".join(f"c.{name}" for name in _CONNECTION_COLUMNS.split(", "))
    + ", "
    + ", ".join(f"v.{name}" for name in VIEW_NAMES[1:])
    + " FROM connections c JOIN connection_view v USING (connection_id) "
    "WHERE c.connection_id = ANY(%b) FOR UPDATE OF c"
)
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS ceiling_connections (connection_id text, app text, "
    "status smallint, version int, session_id text, status_changed_at timestamptz, "
    "substages text[], timed_out_from smallint, session_opened_at timestamptz, "
    "session_opened_by text, holds_credentials boolean, deleted_at timestamptz, marks text) "
    "ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS ceiling_view ON COMMIT DELETE ROWS AS "
    f"SELECT {VIEW_COLUMNS} FROM connection_view WITH NO DATA"
)
"""Staging tables: the upserts' rows go in by binary COPY (formatted in C), not as `unnest`
arrays (dumped element by element in Python)."""
_STAGED_CONNECTION_TYPES = (
    "text", "text", "int2", "int4", "text", "timestamptz", "text[]", "int2", "timestamptz",
    "text", "bool", "timestamptz", "text",
)  # fmt: skip
_UPSERT_CONNECTIONS = (
    f"INSERT INTO connections ({_CONNECTION_COLUMNS}) "
    "SELECT connection_id, app, status, version, session_id, status_changed_at, substages, "
    "timed_out_from, session_opened_at, session_opened_by, holds_credentials, deleted_at, "
    "marks::jsonb FROM ceiling_connections "
    "ON CONFLICT (connection_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CONNECTION_COLUMNS.split(", ")[1:])
)
_UPSERT_VIEW = (
    f"INSERT INTO connection_view ({VIEW_COLUMNS}) SELECT {VIEW_COLUMNS} FROM ceiling_view "
    "ON CONFLICT (connection_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in VIEW_PROJECTED)
)
_COPIES = (
    (
        "connection_sessions (connection_id, session_id, opened_at, opened_by, sequence)",
        ("text", "text", "timestamptz", "text", "int4"),
    ),
    (
        "status_history (connection_id, sequence, session_id, app, from_status, to_status, "
        "event_id, event_type, producer, occurred_at, recorded_at, error, substage, "
        "failure_class, failure_retryable, failure_code)",
        ("text", "int4", "text", "text", "int2", "int2", "uuid", "text", "text", "timestamptz")
        + ("timestamptz", "text", "text", "text", "bool", "text"),
    ),
    ("outbox (connection_id, sequence)", ("text", "int4")),
)
"""The insert-only tables and their column types: binary COPY, which formats a row in C from
the declared types, takes a quarter of the client CPU text COPY takes (its dumpers are chosen
and run per value)."""


class Unsupported(Exception):
    """An event the ceiling does not cover: measuring it would compare different work."""


def decision_table() -> dict[tuple[Any, ...], int]:
    """(source, event type, deduplicates, all substages done, holds credentials, timed out
    from) -> target, for every guard input: `TRANSITIONS.decide` asked once per key here."""
    table: dict[tuple[Any, ...], int] = {}
    pairs = {(source, event) for event, source, _ in TRANSITIONS.rows()}
    for source, event in pairs:
        stuck = [None, *Status] if source is Status.TIMED_OUT else [None]
        for dedup, done, holds, timed_out_from in product(
            (False, True), (False, True), (False, True), stuck
        ):
            ctx = GuardContext(dedup, ALL_SUBSTAGES if done else frozenset(), timed_out_from, holds)
            target = TRANSITIONS.decide(source, event, ctx)
            if target is not None:
                key = (_code(source), event.value, dedup, done, holds, _code(timed_out_from))
                table[key] = int(target)
    return table


def run_effects() -> dict[tuple[int | None, int], tuple[tuple[str, Any, bool], ...]]:
    """(from, to) -> what `RunState.apply` assigns to the view's run columns, found by applying
    a probe transition to a RunState of sentinels: (column, value, is-the-event's-time). An
    error column holds the text used when the event carries none."""
    effects = {}
    for source, target in product([None, *Status], Status):
        probe = Transition(
            "probe", 1, "probe", "probe", source, target, uuid.UUID(int=0), E.LOADING_STARTED,
            "probe", _PROBE_AT, _PROBE_AT, None, None,
        )  # fmt: skip
        assigned = []
        for part in Part:
            run = RunState(_UNSET, _UNSET, _UNSET, _UNSET, _UNSET)
            run.apply(part, probe)
            for name in ("state", "started_at", "succeeded_at", "failed_at", "error"):
                value = getattr(run, name)
                if value is _UNSET:
                    continue
                column = f"{part.name.lower()}_{name}"
                if value is _PROBE_AT:
                    assigned.append((column, None, True))
                else:
                    assigned.append((column, getattr(value, "value", value), False))
        effects[(_code(source), int(target))] = tuple(assigned)
    return effects


def _code(status: Status | None) -> int | None:
    return None if status is None else int(status)


class Ceiling:
    """One batch of message bytes in, its StatusChanged records out, in one transaction."""

    def __init__(self, conn: psycopg.Connection, policy: Policy) -> None:
        self.conn = conn
        self.dedup_apps = policy.deduplication_apps
        self.decisions = decision_table()
        self.effects = run_effects()
        self.credentials = {
            (valid, e): credentials_after(valid, E(e))
            for valid in (None, False, True)
            for e in SCOPE
        }
        self.in_header = SingleObjectCodec(SESSION_EVENT).header
        self.in_schema = load_schema(SESSION_EVENT)
        self.out_header = SingleObjectCodec(STATUS_CHANGED).header
        self.out_schema = load_schema(STATUS_CHANGED)
        self.labels = {int(s): (s.label, s.stage.label, s.is_error) for s in Status}
        self.syncing = {int(s): s.syncing for s in Status}
        self.stage_authorization = {int(s): s.stage is Stage.AUTHORIZATION for s in Status}
        self.new_view = dict(
            zip(
                VIEW_NAMES, view_row(ConnectionView("", "", Status.LOADING, _PROBE_AT)), strict=True
            )
        )

    def apply(self, messages: Sequence[bytes]) -> list[bytes]:
        """Claim, lock and read, decide in arrival order, write, commit, encode: an event id
        already claimed (before, or earlier in the batch) is a duplicate and changes nothing."""
        records = [self.decode(m) for m in messages]
        try:
            fresh = {
                row[0] for row in self.conn.execute(_CLAIM, ([r["event_id"] for r in records],))
            }
            state = self._load({r["connection_id"] for r in records})
            now = datetime.now(UTC)
            writes = _Writes()
            for record in records:
                if record["event_id"] in fresh:
                    fresh.discard(record["event_id"])
                    self._apply(state[record["connection_id"]], record, now, writes)
            self._write([c for c in state.values() if c.touched], writes, now)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return [self.encode(row) for row in writes.history]

    def decode(self, message: bytes) -> dict[str, Any]:
        if message[:10] != self.in_header:
            raise Unsupported("not framed with the current SessionEvent schema")
        buffer = BytesIO(message)
        buffer.seek(10)
        return schemaless_reader(buffer, self.in_schema)

    def encode(self, h: tuple[Any, ...]) -> bytes:
        """A status_history row as the StatusChanged record the relay publishes for it."""
        from_code, to_code = h[4], h[5]
        to_name, stage, is_error = self.labels[to_code]
        buffer = BytesIO()
        buffer.write(self.out_header)
        schemaless_writer(
            buffer,
            self.out_schema,
            {
                "connection_id": h[0], "session_id": h[2], "app": h[3], "sequence": h[1],
                "from_code": from_code,
                "from_name": None if from_code is None else self.labels[from_code][0],
                "to_code": to_code, "to_name": to_name, "stage": stage, "is_error": is_error,
                "substage": h[12], "cause_event_id": h[6], "cause_event_type": h[7],
                "error": h[11], "occurred_at": h[9], "recorded_at": h[10],
                "failure_class": None, "failure_retryable": None, "failure_code": None,
            },
        )  # fmt: skip
        return buffer.getvalue()

    def _load(self, ids: set[str]) -> dict[str, _Connection]:
        """Both rows of every connection in one statement, locked: FOR UPDATE reads the latest
        committed version even when another writer held the lock when the statement began."""
        state = {cid: _Connection(cid) for cid in ids}
        for row in self.conn.execute(_LOAD, (list(ids),)):
            c = state[row[0]]
            (c.app, c.status, c.version, c.session_id, _, substages, c.timed_out_from) = row[1:8]
            (c.opened_at, c.opened_by, c.holds, c.deleted_at, marks) = row[8:13]
            c.substages = set(substages)
            c.marks = {(m[0], m[1]): (datetime.fromisoformat(m[2]), m[3], m[4]) for m in marks}
            c.view = dict(zip(VIEW_NAMES, (row[0], *row[13:]), strict=True))
        return state

    def _apply(self, c: _Connection, r: dict[str, Any], now: datetime, w: _Writes) -> None:
        """The engine's `Connection.accept` for an event it applies, row tuples in and out."""
        opens = self._opens(c, r)
        kind, session, producer, at = r["type"], r["session_id"], r["producer"], r["occurred_at"]
        app = c.app or r["app"]
        key = (
            c.status,
            kind,
            app in self.dedup_apps,
            len(c.substages) == len(Substage),
            bool(c.holds),
            c.timed_out_from,
        )
        target = self.decisions.get(key)
        if target is None:
            raise Unsupported(f"{kind} does not apply from {c.status}: the engine parks it")
        if opens:
            c.session_id, c.opened_at, c.opened_by, c.substages = session, at, producer, set()
            w.sessions.append((c.connection_id, session, at, producer, c.version + 1))
        if (producer, True) not in c.marks and len(c.marks) >= MAX_PRODUCER_MARKS:
            del c.marks[next(iter(c.marks))]
        c.marks[(producer, True)] = (at, kind, r["substage"])
        c.version += 1
        source, c.status, c.app, c.touched = c.status, target, app, True
        row = (
            c.connection_id, c.version, c.session_id, app, source, target, r["event_id"], kind,
            producer, at, now, None, r["substage"], None, None, None,
        )  # fmt: skip
        w.history.append(row)
        w.outbox.append((c.connection_id, c.version))
        if kind == PROCESSING_STARTED:
            c.substages = set()
        elif kind == SUBSTAGE_COMPLETED:
            c.substages.add(r["substage"])
        c.timed_out_from = source if target == Status.TIMED_OUT else None
        c.holds = self.credentials[c.holds, kind]
        self._project(c, row)

    def _opens(self, c: _Connection, r: dict[str, Any]) -> bool:
        """Whether the event opens the connection's first session; Unsupported for what the
        engine would decide otherwise than by the table (other sessions, stale events)."""
        kind, at = r["type"], r["occurred_at"]
        if kind not in SCOPE or r["error"] or r["failure"] or r["attributes"] or r["accounts"]:
            raise Unsupported(f"{kind} with its error, failure, attributes or accounts")
        if c.deleted_at is not None:
            raise Unsupported("an event of a deleted connection")
        opens = c.status is None and kind in OPENERS
        if not opens and r["session_id"] != c.session_id:
            raise Unsupported("an event of another session than the current one")
        if kind == AUTHORIZATION_STARTED and not opens and not self.stage_authorization[c.status]:
            raise Unsupported("a re-authorization of its own session")
        mark = c.marks.get((r["producer"], True))
        if mark is not None and (
            at < mark[0] if at != mark[0] else (kind, r["substage"]) == mark[1:]
        ):
            raise Unsupported("a stale event")
        return opens

    def _project(self, c: _Connection, h: tuple[Any, ...]) -> None:
        """What `ConnectionView.apply_transition` does with a transition of this scope."""
        if c.view is None:
            c.view = {**self.new_view, "connection_id": h[0], "app": h[3], "created_at": h[10]}
        v, kind, at = c.view, h[7], h[9]
        v["status"], v["status_error"], v["status_failure_class"] = h[5], None, None
        for column, value, is_time in self.effects[h[4], h[5]]:
            v[column] = at if is_time else value
        valid = self.credentials[v["credentials_valid"], kind]
        if kind == AUTHORIZATION_SUCCEEDED:
            v["reauthorization_failed_at"] = v["reauthorization_error"] = None
        if valid != v["credentials_valid"]:
            if not valid:
                raise Unsupported("credentials lost")
            v["credentials_valid"], v["credentials_error"] = valid, None
        if kind == AUTHORIZATION_SUCCEEDED:
            v["last_authorized_at"] = at
            if v["accounts_state"] == "loading":
                v["accounts_state"] = "ready"
        elif kind == SYNC_COMPLETED:
            if v["account_count"]:
                raise Unsupported("a sync of a connection with accounts")
            v["last_synced_at"] = at

    def _write(self, touched: list[_Connection], w: _Writes, now: datetime) -> None:
        """Five COPYs and two upserts, whatever the batch holds; the view's rules that the
        scheduler selects by are computed here, once per connection, as `view_row` does."""
        cur = self.conn.cursor()
        for (target, types), rows in zip(_COPIES, (w.sessions, w.history, w.outbox), strict=True):
            if rows:
                with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
        if not touched:
            return
        cur.execute(_STAGE)
        with cur.copy("COPY ceiling_connections FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_STAGED_CONNECTION_TYPES)
            for c in touched:
                copy.write_row(_connection_row(c, now))
        cur.execute(_UPSERT_CONNECTIONS)
        with cur.copy(f"COPY ceiling_view ({VIEW_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_VIEW_TYPES)
            for c in touched:
                v = c.view
                alive = v["deleted_at"] is None
                v["can_extract"] = (
                    bool(v["credentials_valid"]) and v["active_account_count"] > 0 and alive
                )
                v["can_sync_accounts"] = bool(v["credentials_valid"]) and alive
                v["sync_in_progress"] = self.syncing[v["status"]] and alive
                copy.write_row([v[name] for name in VIEW_NAMES])
        cur.execute(_UPSERT_VIEW)


def _connection_row(c: _Connection, now: datetime) -> tuple[Any, ...]:
    marks = [[p, s, m[0].isoformat(), m[1], m[2]] for (p, s), m in c.marks.items()]
    return (
        c.connection_id, c.app, c.status, c.version, c.session_id, now, sorted(c.substages),
        c.timed_out_from, c.opened_at, c.opened_by, c.holds, c.deleted_at, json.dumps(marks),
    )  # fmt: skip


class _Connection:
    """A connections row and its view row, as plain values, for one batch."""

    __slots__ = (
        "connection_id", "app", "status", "version", "session_id", "opened_at", "opened_by",
        "substages", "timed_out_from", "holds", "deleted_at", "marks", "view", "touched",
    )  # fmt: skip

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        self.app: str | None = None
        self.status: int | None = None
        self.version = 0
        self.session_id: str | None = None
        self.opened_at: datetime | None = None
        self.opened_by: str | None = None
        self.substages: set[str] = set()
        self.timed_out_from: int | None = None
        self.holds: bool | None = None
        self.deleted_at: datetime | None = None
        self.marks: dict[tuple[str, bool], tuple[datetime, str, str | None]] = {}
        self.view: dict[str, Any] | None = None
        self.touched = False


class _Writes:
    """The rows of one batch for the insert-only tables, in the order they were decided."""

    __slots__ = ("sessions", "history", "outbox")

    def __init__(self) -> None:
        self.sessions: list[tuple[Any, ...]] = []
        self.history: list[tuple[Any, ...]] = []
        self.outbox: list[tuple[str, int]] = []
