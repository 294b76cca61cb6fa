"""The store port in memory, with the semantics of the PostgreSQL one (`store/uow.py`).

`tests/helpers/store_contract.py` runs one suite against both, so what the engine's unit tests
learn on this fake holds on PostgreSQL. What it keeps is what the tables keep: a connection as
its row (`store/rows.py` connection_from_row / connection_columns / marks), parked events as
their record and origin, history without the transitions' attributes, views without the
scheduling columns, and every load returns fresh objects, never what was saved.

A unit of work writes nothing until its block ends normally; then, under the store's lock, it
checks that nobody changed what it wrote against since it read it (ConcurrentUpdate otherwise,
as the optimistic checks of the PostgreSQL repository raise), and lands everything at once.
Reads see what was committed, overlaid with the unit of work's own writes (PostgreSQL's READ
COMMITTED). Unlike PostgreSQL, `load` never waits for another unit of work holding the same
connection: a single-threaded test may interleave two writers on purpose, and the optimistic
checks then refuse the loser. `lock_due` and `lock_expired_parked` skip connections another
open unit of work holds, as `pg_try_advisory_xact_lock` does.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from syncstatus.service.inbound import Origin, RejectedMessage
from syncstatus.service.ports import ConcurrentUpdate
from syncstatus.statemachine.connection import (
    Connection,
    MarkKey,
    ParkedEvent,
    Policy,
    ProducerMark,
    Refusal,
    SessionRecord,
    Transition,
)
from syncstatus.statemachine.events import SessionEvent, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import AccountRow, ConnectionView, CredentialRow
from syncstatus.statemachine.workspaces import Scope


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """The columns of `connections` (CONNECTION_COLUMNS)."""

    connection_id: str
    app: str | None
    status: Status
    version: int
    session_id: str | None
    session_opened_at: datetime | None
    session_opened_by: str | None
    status_changed_at: datetime | None
    completed_substages: frozenset[Substage]
    timed_out_from: Status | None
    holds_credentials: bool | None
    deleted_at: datetime | None
    producer_marks: tuple[tuple[MarkKey, ProducerMark], ...]
    workspace_id: str

    @classmethod
    def of(cls, c: Connection) -> ConnectionRow:
        assert c.status is not None, "a connection is stored once it has a status"
        return cls(
            c.connection_id,
            c.app,
            c.status,
            c.version,
            c.session_id,
            c.session_opened_at,
            c.session_opened_by,
            c.status_changed_at,
            frozenset(c.completed_substages),
            c.timed_out_from,
            c.holds_credentials,
            c.deleted_at,
            tuple(c.producer_marks.items()),
            c.workspace_id,
        )

    def connection(self) -> Connection:
        return Connection(
            connection_id=self.connection_id,
            app=self.app,
            status=self.status,
            version=self.version,
            loaded_version=self.version,
            session_id=self.session_id,
            session_opened_at=self.session_opened_at,
            session_opened_by=self.session_opened_by,
            status_changed_at=self.status_changed_at,
            completed_substages=self.completed_substages,
            timed_out_from=self.timed_out_from,
            holds_credentials=self.holds_credentials,
            deleted_at=self.deleted_at,
            producer_marks=dict(self.producer_marks),
            workspace_id=self.workspace_id,
        )


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A row of `parked_events`: the event as its record, and the message it came in."""

    event_id: uuid.UUID
    connection_id: str
    parked_at: datetime
    event: Mapping[str, Any]
    origin: Origin | None

    def parked(self) -> ParkedEvent:
        return ParkedEvent(
            SessionEvent.from_record(copy.deepcopy(dict(self.event))), self.parked_at
        )


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """A row of `connection_activity`."""

    connection_id: str
    session_id: str
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    error: str | None


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A row of `dead_letters`; ids come from a sequence, as PostgreSQL's do."""

    id: int
    reason: str
    detail: str
    event_id: uuid.UUID | None
    connection_id: str | None
    event_type: str | None
    from_status: int | None
    event: Mapping[str, Any] | None
    origin: Origin | None
    producer: str | None
    app: str | None
    redriven_at: datetime | None = None
    redriven_by: str | None = None
    redrive_count: int = 0


@dataclass(frozen=True, slots=True)
class RedriveRow:
    """A row of `redrives`: the outbox the redrive relay publishes from."""

    dead_letter_id: int
    requested_by: str
    requested_at: datetime


@dataclass
class _Tables:
    processed: set[uuid.UUID] = field(default_factory=set)
    connections: dict[str, ConnectionRow] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionRecord] = field(default_factory=dict)
    parked: dict[uuid.UUID, ParkedRow] = field(default_factory=dict)  # in arrival order
    history: list[Transition] = field(default_factory=list)
    outbox: list[tuple[str, int]] = field(default_factory=list)
    activity: list[ActivityRow] = field(default_factory=list)
    views: dict[str, ConnectionView] = field(default_factory=dict)
    dead_letters: dict[int, DeadLetterRow] = field(default_factory=dict)
    redrives: list[RedriveRow] = field(default_factory=list)


@dataclass
class _Writes:
    """What one unit of work changed, landed together at commit."""

    claimed: set[uuid.UUID] = field(default_factory=set)
    # connection id -> (version the committed row must still have, None: no row; new row)
    connections: dict[str, tuple[int | None, ConnectionRow]] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionRecord] = field(default_factory=dict)
    parked: dict[uuid.UUID, ParkedRow] = field(default_factory=dict)
    unparked: set[uuid.UUID] = field(default_factory=set)
    history: list[Transition] = field(default_factory=list)
    outbox: list[tuple[str, int]] = field(default_factory=list)
    activity: list[ActivityRow] = field(default_factory=list)
    views: dict[str, ConnectionView] = field(default_factory=dict)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    redrives: list[RedriveRow] = field(default_factory=list)


def _view_copy(v: ConnectionView, created_at: datetime | None = None) -> ConnectionView:
    """What connection_view, accounts and credentials give back: the projected columns, the
    children in their stored order, no scheduling columns, nothing marked changed."""
    return ConnectionView(
        connection_id=v.connection_id,
        app=v.app,
        status=Status(v.status),
        created_at=created_at or v.created_at,
        business_account=v.business_account,
        business_account_id=v.business_account_id,
        credentials_valid=v.credentials_valid,
        credentials_error=v.credentials_error,
        accounts_state=v.accounts_state,
        accounts_error=v.accounts_error,
        last_authorized_at=v.last_authorized_at,
        last_synced_at=v.last_synced_at,
        reauthorization_failed_at=v.reauthorization_failed_at,
        reauthorization_error=v.reauthorization_error,
        deleted_at=v.deleted_at,
        status_error=v.status_error,
        status_failure_class=v.status_failure_class,
        source_sync=replace(v.source_sync),
        data_refresh=replace(v.data_refresh),
        workspace_id=v.workspace_id,
        accounts={
            a.account_id: AccountRow(a.account_id, a.name, a.status, a.created_at, a.updated_at)
            for a in sorted(v.accounts.values(), key=lambda a: a.account_id)
        },
        credentials=[
            CredentialRow(c.credential_id, c.added_at)
            for c in sorted(v.credentials, key=lambda c: c.added_at)
        ],
    )


class _Base:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _committed(self) -> _Tables:
        return self._uow.store.tables

    @property
    def _writes(self) -> _Writes:
        return self._uow.writes


class FakeProcessedEvents(_Base):
    def claim(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        fresh = {
            i
            for i in event_ids
            if i not in self._writes.claimed and i not in self._committed.processed
        }
        self._writes.claimed |= fresh
        return fresh


class FakeConnections(_Base):
    def load(self, sessions: Mapping[str, Iterable[str]]) -> dict[str, Connection]:
        with self._uow.store.lock:
            ids = sorted(set(sessions))
            self._uow.hold(ids)
            return self._read(ids, sessions)

    def lock_due(self, now: datetime, policy: Policy, limit: int) -> dict[str, Connection]:
        with self._uow.store.lock:
            due = []
            for row in self._rows():
                timeout = policy.timeout_for(row.status)
                if timeout is not None and row.status_changed_at <= now - timeout:
                    due.append(row)
            due.sort(key=lambda r: (r.status_changed_at, r.connection_id))
            ids = self._uow.try_hold([r.connection_id for r in due[:limit]])
            return self._read(ids)

    def lock_expired_parked(self, cutoff: datetime, limit: int) -> dict[str, Connection]:
        with self._uow.store.lock:
            oldest: dict[str, datetime] = {}
            for row in self._parked_rows():
                if row.parked_at < cutoff:
                    first = oldest.get(row.connection_id)
                    oldest[row.connection_id] = (
                        row.parked_at if first is None else min(first, row.parked_at)
                    )
            ids = sorted(oldest, key=lambda cid: (oldest[cid], cid))[:limit]
            return self._read(self._uow.try_hold(ids))

    def save(
        self, connections: Iterable[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        with self._uow.store.lock:
            return self._save(list(connections), origins)

    # -- reads: what was committed, overlaid with this unit of work's writes

    def _row(self, connection_id: str) -> ConnectionRow | None:
        written = self._writes.connections.get(connection_id)
        return written[1] if written else self._committed.connections.get(connection_id)

    def _rows(self) -> list[ConnectionRow]:
        ids = {*self._committed.connections, *self._writes.connections}
        return [row for cid in ids if (row := self._row(cid)) is not None]

    def _parked_rows(self) -> list[ParkedRow]:
        kept = [p for i, p in self._committed.parked.items() if i not in self._writes.unparked]
        return kept + [p for i, p in self._writes.parked.items() if i not in self._writes.unparked]

    def _has_session(self, key: tuple[str, str]) -> bool:
        return key in self._writes.sessions or key in self._committed.sessions

    def _read(
        self, ids: list[str], sessions: Mapping[str, Iterable[str]] | None = None
    ) -> dict[str, Connection]:
        loaded: dict[str, Connection] = {}
        for cid in ids:
            row = self._row(cid)
            loaded[cid] = row.connection() if row else Connection(connection_id=cid)
        for parked in self._parked_rows():
            if parked.connection_id in loaded:
                loaded[parked.connection_id].parked.append(parked.parked())
        sessions = sessions or {}
        for cid, connection in loaded.items():
            if connection.status is None:
                continue
            named = {*sessions.get(cid, ()), *(p.event.session_id for p in connection.parked)}
            connection.left_sessions.update(
                sid
                for sid in named
                if sid != connection.session_id and self._has_session((cid, sid))
            )
        return loaded

    # -- writes

    def _save(
        self, everything: list[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        writes = self._writes
        changed = [c for c in everything if c.transitions or c.activities]
        for c in changed:
            self._write_connection(c)
        for c in everything:
            for s in c.new_sessions:
                if not self._has_session((c.connection_id, s.session_id)):
                    writes.sessions[(c.connection_id, s.session_id)] = s
        released = self._write_parked(everything, origins)
        writes.history.extend(replace(t, attributes={}) for c in changed for t in c.transitions)
        writes.outbox.extend((t.connection_id, t.sequence) for c in changed for t in c.transitions)
        writes.activity.extend(
            ActivityRow(
                c.connection_id,
                a.event.session_id,
                a.event.event_id,
                a.event.type.value,
                a.event.occurred_at,
                a.recorded_at,
                a.event.error,
            )
            for c in everything
            for a in c.activities
        )
        return released

    def _write_connection(self, c: Connection) -> None:
        """Insert a new one, or update one whose stored version is still the one loaded."""
        if c.status is None:
            return
        own = self._writes.connections.get(c.connection_id)
        current = own[1] if own else self._committed.connections.get(c.connection_id)
        if c.loaded_version == 0:
            if current is not None:
                raise ConcurrentUpdate("a new connection was created by another writer")
        elif current is None or current.version != c.loaded_version:
            raise ConcurrentUpdate("a connection was changed by another writer")
        expected = own[0] if own else (c.loaded_version or None)
        self._writes.connections[c.connection_id] = (expected, ConnectionRow.of(c))

    def _write_parked(
        self, connections: list[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        writes = self._writes
        gone = [event_id for c in connections for event_id in c.unparked]
        present = {p.event_id: p for p in self._parked_rows()}
        if any(event_id not in present for event_id in gone):
            raise ConcurrentUpdate("a parked event was released by another writer")
        released = {i: o for i in gone if (o := present[i].origin) is not None}
        for event_id in gone:
            if writes.parked.pop(event_id, None) is None:
                writes.unparked.add(event_id)
        for c in connections:
            for p in c.newly_parked:
                writes.parked[p.event.event_id] = ParkedRow(
                    p.event.event_id,
                    p.event.connection_id,
                    p.parked_at,
                    p.event.to_record(),
                    origins.get(p.event.event_id),
                )
        return released


class FakeViews(_Base):
    def load(self, connection_ids: Iterable[str]) -> dict[str, ConnectionView]:
        with self._uow.store.lock:
            views = {}
            for cid in sorted(set(connection_ids)):
                view = self._writes.views.get(cid) or self._committed.views.get(cid)
                if view is not None:
                    views[cid] = _view_copy(view)
            return views

    def save(self, views: Sequence[ConnectionView]) -> None:
        with self._uow.store.lock:
            for v in views:
                stored = self._writes.views.get(v.connection_id) or self._committed.views.get(
                    v.connection_id
                )
                kept = _view_copy(v, created_at=stored.created_at if stored else None)
                if not v.accounts_changed:
                    kept.accounts = stored.accounts if stored else {}
                if not v.credentials_changed:
                    kept.credentials = stored.credentials if stored else []
                self._writes.views[v.connection_id] = kept


class FakeDeadLetters(_Base):
    def add(
        self,
        refusals: Sequence[Refusal],
        origins: Mapping[uuid.UUID, Origin],
        rejected: Sequence[RejectedMessage],
    ) -> None:
        ids = self._uow.store.dead_letter_ids
        self._writes.dead_letters.extend(
            DeadLetterRow(
                next(ids),
                r.reason.value,
                r.detail,
                r.event.event_id,
                r.event.connection_id,
                r.event.type.value,
                None if r.from_status is None else int(r.from_status),
                r.event.to_record(),
                origins.get(r.event.event_id),
                r.event.producer,
                r.event.app,
            )
            for r in refusals
        )
        self._writes.dead_letters.extend(
            DeadLetterRow(
                next(ids),
                m.reason,
                m.detail,
                m.event.event_id if m.event else None,
                m.event.connection_id if m.event else None,
                m.event.type.value if m.event else None,
                None,
                m.event.to_record() if m.event else None,
                m.origin,
                m.event.producer if m.event else None,
                m.event.app if m.event else None,
            )
            for m in rejected
        )

    def messages(self, dead_letter_ids: Sequence[int], scope: Scope) -> dict[int, Origin | None]:
        with self._uow.store.lock:
            rows = {**self._committed.dead_letters, **{d.id: d for d in self._writes.dead_letters}}
            return {
                i: rows[i].origin
                for i in dead_letter_ids
                if i in rows and self._in_scope(rows[i].connection_id, scope)
            }

    def _in_scope(self, connection_id: str | None, scope: Scope) -> bool:
        """A dead letter is in its stored connection's workspace; one of none, in none."""
        if scope is None:
            return True
        written = self._writes.connections.get(connection_id or "")
        row = written[1] if written else self._committed.connections.get(connection_id or "")
        return row is not None and row.workspace_id == scope

    def redriven(self, dead_letter_ids: Sequence[int]) -> dict[int, uuid.UUID | None]:
        with self._uow.store.lock:
            rows = self._committed.dead_letters
            asked = {r.dead_letter_id for r in self._writes.redrives}
            return {
                i: rows[i].event_id
                for i in dead_letter_ids
                if i in rows and (rows[i].redriven_at is not None or i in asked)
            }

    def request_redrive(self, dead_letter_ids: Sequence[int], by: str, at: datetime) -> None:
        self._writes.redrives.extend(RedriveRow(i, by, at) for i in dead_letter_ids)


class FakeUnitOfWork:
    def __init__(self, store: FakeStore, token: int) -> None:
        self.store = store
        self.token = token
        self.writes = _Writes()
        self.processed = FakeProcessedEvents(self)
        self.connections = FakeConnections(self)
        self.views = FakeViews(self)
        self.dead_letters = FakeDeadLetters(self)

    def hold(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.store.held.setdefault(cid, self.token)

    def try_hold(self, ids: Iterable[str]) -> list[str]:
        """Those no other open unit of work holds, now held by this one."""
        free = [cid for cid in ids if self.store.held.get(cid, self.token) == self.token]
        self.hold(free)
        return free

    def release(self) -> None:
        for cid in [cid for cid, token in self.store.held.items() if token == self.token]:
            del self.store.held[cid]

    def commit(self) -> None:
        """Everything at once, or ConcurrentUpdate and nothing if another writer came first."""
        tables, writes = self.store.tables, self.writes
        if writes.claimed & tables.processed:
            raise ConcurrentUpdate("an event was claimed by another writer")
        for cid, (expected, _) in writes.connections.items():
            committed = tables.connections.get(cid)
            if (committed.version if committed else None) != expected:
                raise ConcurrentUpdate("a connection was changed by another writer")
        if not writes.unparked <= tables.parked.keys():
            raise ConcurrentUpdate("a parked event was released by another writer")
        tables.processed |= writes.claimed
        tables.connections.update((cid, row) for cid, (_, row) in writes.connections.items())
        for key, session in writes.sessions.items():
            tables.sessions.setdefault(key, session)
        for event_id in writes.unparked:
            del tables.parked[event_id]
        tables.parked.update(writes.parked)
        tables.history.extend(writes.history)
        tables.outbox.extend(writes.outbox)
        tables.activity.extend(writes.activity)
        tables.views.update(writes.views)
        tables.dead_letters.update((d.id, d) for d in writes.dead_letters)
        for r in writes.redrives:
            d = tables.dead_letters[r.dead_letter_id]
            tables.dead_letters[d.id] = replace(
                d,
                redriven_at=r.requested_at,
                redriven_by=r.requested_by,
                redrive_count=d.redrive_count + 1,
            )
        tables.redrives.extend(writes.redrives)


class FakeStore:
    """The `Store` port in memory; its tables are readable for assertions."""

    def __init__(self) -> None:
        self.tables = _Tables()
        self.lock = threading.RLock()
        self.held: dict[str, int] = {}
        self.commits = 0
        self._tokens = itertools.count(1)
        self.dead_letter_ids = itertools.count(1)

    @contextmanager
    def unit_of_work(self) -> Iterator[FakeUnitOfWork]:
        with self.lock:
            uow = FakeUnitOfWork(self, next(self._tokens))
        try:
            yield uow
            with self.lock:
                uow.commit()
                self.commits += 1
        finally:
            with self.lock:
                uow.release()

    # -- what the tables hold, for assertions

    def connection(self, connection_id: str) -> ConnectionRow | None:
        return self.tables.connections.get(connection_id)

    def history(self, connection_id: str | None = None) -> list[Transition]:
        return [t for t in self.tables.history if connection_id in (None, t.connection_id)]

    def parked(self) -> list[ParkedRow]:
        return list(self.tables.parked.values())

    def dead_letters(self) -> list[DeadLetterRow]:
        return list(self.tables.dead_letters.values())

    def redrives(self) -> list[RedriveRow]:
        return list(self.tables.redrives)
