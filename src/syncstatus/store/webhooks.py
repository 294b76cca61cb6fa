"""Webhook subscriptions, their positions in the feed, redeliveries and the delivery log.

The API side (`WebhookStore`) creates, lists, deletes, resumes and asks for redeliveries; the
relay side (`WebhookClaims`) claims one subscription at a time with a session advisory lock
on a connection of its own, so several `syncstatus run` processes never deliver one
subscription's records at once, and a process that dies lets go with its connection. Only a
subscription's claimer moves its position: a redelivery is a request it carries out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from syncstatus.schemas.changes import ChangeFilter, FeedPosition
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.changes import FEED_COLUMNS as _FEED_COLUMNS
from syncstatus.store.changes import (
    Change,
    FeedPage,
    change_from_row,
    count_after,
    filter_clause,
    head,
    read_page,
)
from syncstatus.store.database import SESSION_OPTIONS
from syncstatus.store.errors import translated

ACTIVE = "active"
FAILING = "failing"
"""Paused after its retry period ran out; `POST /webhooks/{id}/resume` makes it active."""
CLAIM_LOCK = 4242105
"""First key of the two-key advisory lock a relay holds on a subscription (the second is a
hash of its id): the two-key space never meets the connections' one-key locks."""

_SUBSCRIPTION = (
    "SELECT s.id, s.url, s.description, s.workspace_id, s.apps, s.statuses, s.errors_only, "
    "s.state, s.paused_at, s.pause_reason, s.created_by, s.created_at, p.feed_xid, p.feed_id, "
    "p.attempts, p.failing_since, p.retry_at, p.delivered_at, EXISTS (SELECT 1 FROM "
    "webhook_redeliveries r WHERE r.subscription_id = s.id AND r.done_at IS NULL), s.secret "
    "FROM webhook_subscriptions s JOIN webhook_positions p ON p.subscription_id = s.id"
)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: uuid.UUID
    url: str
    description: str | None
    where: ChangeFilter
    state: str
    paused_at: datetime | None
    pause_reason: str | None
    created_by: str
    created_at: datetime
    position: FeedPosition
    """The last record delivered (or passed over by the filter)."""
    attempts: int
    """Failed attempts in a row at the record after `position` (or of a redelivery)."""
    failing_since: datetime | None
    retry_at: datetime | None
    delivered_at: datetime | None
    redelivering: bool
    """A redelivery was asked for and is not carried out yet."""
    secret: str = field(repr=False)


def _subscription(row: Sequence[Any]) -> Subscription:
    (sid, url, description, workspace, apps, statuses, errors_only, state) = row[:8]
    paused_at, pause_reason, created_by, created_at, xid, fid = row[8:14]
    attempts, failing_since, retry_at, delivered_at, redelivering, secret = row[14:20]
    return Subscription(
        id=sid,
        url=url,
        description=description,
        where=ChangeFilter(
            workspace,
            None if apps is None else frozenset(apps),
            None if statuses is None else frozenset(statuses),
            errors_only,
        ),
        state=state,
        paused_at=paused_at,
        pause_reason=pause_reason,
        created_by=created_by,
        created_at=created_at,
        position=FeedPosition(xid, fid),
        attempts=attempts,
        failing_since=failing_since,
        retry_at=retry_at,
        delivered_at=delivered_at,
        redelivering=redelivering,
        secret=secret,
    )


@dataclass(frozen=True, slots=True)
class Redelivery:
    """A redelivery asked for: one connection's records `next_sequence`..`last_sequence`, or
    (`rewind`) every record after a position again."""

    id: int
    connection_id: str | None
    next_sequence: int | None
    last_sequence: int | None
    rewind: FeedPosition | None
    requested_by: str
    requested_at: datetime
    done_at: datetime | None = None


_REDELIVERY = (
    "SELECT id, connection_id, next_sequence, last_sequence, rewind_xid, rewind_id, "
    "requested_by, requested_at, done_at FROM webhook_redeliveries"
)


def _redelivery(row: Sequence[Any]) -> Redelivery:
    rid, cid, next_sequence, last_sequence, xid, fid, by, at, done_at = row
    rewind = None if xid is None else FeedPosition(xid, fid)
    return Redelivery(rid, cid, next_sequence, last_sequence, rewind, by, at, done_at)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt, as the log keeps it."""

    message_id: str
    connection_id: str
    sequence: int
    attempt: int
    attempted_at: datetime
    outcome: str
    status_code: int | None
    seconds: float
    error: str | None
    redelivery: bool = False


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    id: int
    attempt: Attempt


@dataclass(slots=True)
class Progress:
    """What one round of deliveries changes, written in one transaction: the attempts, the
    new position (or the redelivery's next sequence), the retry state, a pause."""

    attempts: list[Attempt] = field(default_factory=list)
    position: FeedPosition | None = None
    redelivery: Redelivery | None = None
    redelivery_next: int | None = None
    failures: int = 0
    failing_since: datetime | None = None
    retry_at: datetime | None = None
    delivered_at: datetime | None = None
    pause_reason: str | None = None


class NotFound(LookupError):
    """No such subscription within the caller's scope (404)."""


class Conflict(ValueError):
    """The request cannot apply now, with the reason (409)."""


def _visible(scope: Scope) -> tuple[str, dict[str, Any]]:
    """A subscription is within a scope when it is confined to that workspace; an unscoped
    subscription (all workspaces) only to unscoped callers."""
    if scope is None:
        return "", {}
    return " AND s.workspace_id = %(scope)s", {"scope": scope}


class WebhookStore:
    """Subscriptions for the API: every call takes the caller's scope."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        with translated(), self.engine.begin() as connection:
            yield connection.connection.driver_connection

    def create(
        self,
        url: str,
        description: str | None,
        where: ChangeFilter,
        created_by: str,
        secret: str,
        start: FeedPosition | None = None,
    ) -> Subscription:
        """A new active subscription; from `start`, or from now (the feed's head)."""
        sid = uuid.uuid4()
        with self._raw() as raw:
            position = start or head(raw)
            raw.execute(
                "INSERT INTO webhook_subscriptions (id, url, description, workspace_id, apps, "
                "statuses, errors_only, secret, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    sid,
                    url,
                    description,
                    where.workspace,
                    None if where.apps is None else sorted(where.apps),
                    None if where.statuses is None else sorted(where.statuses),
                    where.errors_only,
                    secret,
                    created_by,
                ),
            )
            raw.execute(
                "INSERT INTO webhook_positions (subscription_id, feed_xid, feed_id) "
                "VALUES (%s, %s, %s)",
                (sid, position.xid, position.id),
            )
            row = raw.execute(f"{_SUBSCRIPTION} WHERE s.id = %s", (sid,)).fetchone()
        return _subscription(row)

    def list(self, *, scope: Scope) -> list[Subscription]:
        confined, params = _visible(scope)
        with self._raw() as raw:
            rows = raw.execute(
                f"{_SUBSCRIPTION} WHERE true{confined} ORDER BY s.created_at, s.id", params
            ).fetchall()
        return [_subscription(row) for row in rows]

    def get(self, subscription_id: uuid.UUID, *, scope: Scope) -> Subscription:
        confined, params = _visible(scope)
        with self._raw() as raw:
            row = raw.execute(
                f"{_SUBSCRIPTION} WHERE s.id = %(id)s{confined}", {"id": subscription_id, **params}
            ).fetchone()
        if row is None:
            raise NotFound(f"no webhook subscription {subscription_id}")
        return _subscription(row)

    def delete(self, subscription_id: uuid.UUID, *, scope: Scope) -> None:
        """Gone with its position, redeliveries and log; a relay delivering it stops at its
        next write."""
        confined, params = _visible(scope)
        with self._raw() as raw:
            deleted = raw.execute(
                f"DELETE FROM webhook_subscriptions s WHERE s.id = %(id)s{confined}",
                {"id": subscription_id, **params},
            ).rowcount
        if not deleted:
            raise NotFound(f"no webhook subscription {subscription_id}")

    def resume(self, subscription_id: uuid.UUID, *, scope: Scope) -> Subscription:
        """A failing subscription active again, its record tried at once."""
        self.get(subscription_id, scope=scope)
        with self._raw() as raw:
            resumed = raw.execute(
                "UPDATE webhook_subscriptions SET state = %s, paused_at = NULL, "
                "pause_reason = NULL WHERE id = %s AND state = %s",
                (ACTIVE, subscription_id, FAILING),
            ).rowcount
            if not resumed:
                raise Conflict("the subscription is not failing; nothing to resume")
            raw.execute(
                "UPDATE webhook_positions SET attempts = 0, failing_since = NULL, "
                "retry_at = NULL WHERE subscription_id = %s",
                (subscription_id,),
            )
        return self.get(subscription_id, scope=scope)

    def redeliver_connection(
        self,
        subscription_id: uuid.UUID,
        connection_id: str,
        from_sequence: int,
        requested_by: str,
        *,
        scope: Scope,
    ) -> Redelivery:
        """Deliver one connection's records again, from `from_sequence` up to the last one
        the subscription has passed; those after it come in order anyway. The subscription
        delivers them before anything newer."""
        subscription = self.get(subscription_id, scope=scope)
        clause = filter_clause(subscription.where, scope)
        if clause is None:
            raise NotFound(f"no history for connection {connection_id}")
        condition, params = clause
        params.update(c=connection_id, xid=subscription.position.xid, fid=subscription.position.id)
        with self._raw() as raw:
            known, last = raw.execute(
                "SELECT count(*), max(h.sequence) FILTER (WHERE (h.feed_xid, h.feed_id) <= "
                "(%(xid)s, %(fid)s)) FROM status_history h "
                f"WHERE h.connection_id = %(c)s AND {condition}",
                params,
            ).fetchone()
            if not known:
                raise NotFound(f"no history for connection {connection_id}")
            if last is None or last < from_sequence:
                raise Conflict(
                    f"the subscription has not passed sequence {from_sequence} of "
                    f"{connection_id} yet: it will be delivered in order"
                )
            row = raw.execute(
                "INSERT INTO webhook_redeliveries (subscription_id, connection_id, "
                "next_sequence, last_sequence, requested_by) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING id, connection_id, next_sequence, last_sequence, rewind_xid, "
                "rewind_id, requested_by, requested_at, done_at",
                (subscription_id, connection_id, from_sequence, last, requested_by),
            ).fetchone()
        return _redelivery(row)

    def rewind(
        self,
        subscription_id: uuid.UUID,
        after: FeedPosition,
        requested_by: str,
        *,
        scope: Scope,
    ) -> Redelivery:
        """Deliver every record after `after` again (only back: never past what is due)."""
        subscription = self.get(subscription_id, scope=scope)
        if after >= subscription.position:
            raise Conflict(f"the subscription has not passed {after} yet; nothing to redeliver")
        with self._raw() as raw:
            row = raw.execute(
                "INSERT INTO webhook_redeliveries (subscription_id, rewind_xid, rewind_id, "
                "requested_by) VALUES (%s, %s, %s, %s) RETURNING id, connection_id, "
                "next_sequence, last_sequence, rewind_xid, rewind_id, requested_by, "
                "requested_at, done_at",
                (subscription_id, after.xid, after.id, requested_by),
            ).fetchone()
        return _redelivery(row)

    def redeliveries(self, subscription_id: uuid.UUID, *, scope: Scope) -> list[Redelivery]:
        self.get(subscription_id, scope=scope)
        with self._raw() as raw:
            rows = raw.execute(
                f"{_REDELIVERY} WHERE subscription_id = %s ORDER BY id DESC LIMIT 50",
                (subscription_id,),
            ).fetchall()
        return [_redelivery(row) for row in rows]

    def deliveries(
        self, subscription_id: uuid.UUID, limit: int, before: int | None, *, scope: Scope
    ) -> list[LoggedAttempt]:
        """The delivery log, newest first; `before` pages back (an entry's id)."""
        self.get(subscription_id, scope=scope)
        with self._raw() as raw:
            rows = raw.execute(
                "SELECT id, message_id, connection_id, sequence, attempt, attempted_at, outcome, "
                "status_code, seconds, error, redelivery FROM webhook_deliveries "
                "WHERE subscription_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
                (subscription_id, before or 2**63 - 1, limit),
            ).fetchall()
        return [LoggedAttempt(row[0], Attempt(*row[1:])) for row in rows]

    def due(self, now: datetime) -> tuple[list[uuid.UUID], datetime | None]:
        """Active subscriptions not waiting for a retry, and the next retry after `now`."""
        with self._raw() as raw:
            rows = raw.execute(
                "SELECT s.id, p.retry_at FROM webhook_subscriptions s "
                "JOIN webhook_positions p ON p.subscription_id = s.id WHERE s.state = %s",
                (ACTIVE,),
            ).fetchall()
        due = [sid for sid, retry_at in rows if retry_at is None or retry_at <= now]
        later = [retry_at for _, retry_at in rows if retry_at is not None and retry_at > now]
        return due, min(later, default=None)

    def backlogs(self, cap: int) -> dict[str, int]:
        """Records each subscription has still to deliver (final or not, up to `cap`)."""
        with self._raw() as raw:
            subscriptions = [_subscription(row) for row in raw.execute(_SUBSCRIPTION).fetchall()]
            return {str(s.id): count_after(raw, s.position, s.where, cap) for s in subscriptions}


class WebhookClaims:
    """One relay worker's connection: the advisory locks it holds on the subscriptions it
    delivers, and every read and write of theirs (autocommit, with explicit transactions)."""

    def __init__(self, url: sa.URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: psycopg.Connection | None = None

    def _raw(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=5, options=SESSION_OPTIONS
            )
        return self._connection

    @contextmanager
    def claim(self, subscription_id: uuid.UUID) -> Iterator[Claimed | None]:
        """The subscription to deliver, or None if another relay holds it."""
        key = str(subscription_id)
        with translated():
            raw = self._raw()
            try:
                (locked,) = raw.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CLAIM_LOCK, key)
                ).fetchone()
            except psycopg.Error:
                self.close()
                raise
        if not locked:
            yield None
            return
        try:
            yield Claimed(raw, subscription_id)
        finally:
            try:
                raw.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_LOCK, key))
            except psycopg.Error:
                self.close()  # the lock goes with the connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Claimed:
    """A subscription this relay holds: read it, its redeliveries and its records; record
    what was delivered."""

    def __init__(self, raw: psycopg.Connection, subscription_id: uuid.UUID) -> None:
        self._raw = raw
        self.id = subscription_id

    def subscription(self) -> Subscription | None:
        with translated():
            row = self._raw.execute(f"{_SUBSCRIPTION} WHERE s.id = %s", (self.id,)).fetchone()
        return None if row is None else _subscription(row)

    def pending_redelivery(self) -> Redelivery | None:
        with translated():
            row = self._raw.execute(
                f"{_REDELIVERY} WHERE subscription_id = %s AND done_at IS NULL ORDER BY id LIMIT 1",
                (self.id,),
            ).fetchone()
        return None if row is None else _redelivery(row)

    def feed(self, after: FeedPosition, where: ChangeFilter, limit: int) -> FeedPage:
        with translated():
            return read_page(self._raw, after, where, None, limit)

    def connection_records(
        self, redelivery: Redelivery, where: ChangeFilter, limit: int
    ) -> list[Change]:
        """The next records of a connection's redelivery that the subscription wants."""
        clause = filter_clause(where, None)
        if clause is None:
            return []
        condition, params = clause
        params.update(
            c=redelivery.connection_id,
            next=redelivery.next_sequence,
            last=redelivery.last_sequence,
            limit=limit,
        )
        with translated():
            rows = self._raw.execute(
                f"SELECT {_FEED_COLUMNS} FROM status_history h WHERE h.connection_id = %(c)s "
                f"AND h.sequence BETWEEN %(next)s AND %(last)s AND {condition} "
                "ORDER BY h.sequence LIMIT %(limit)s",
                params,
            ).fetchall()
        return [change_from_row(row) for row in rows]

    def rewind(self, redelivery: Redelivery, now: datetime) -> None:
        """Carry out a rewind: the position goes back, the retry state starts afresh."""
        assert redelivery.rewind is not None
        with translated(), self._raw.transaction():
            self._raw.execute(
                "UPDATE webhook_positions SET feed_xid = %s, feed_id = %s, attempts = 0, "
                "failing_since = NULL, retry_at = NULL WHERE subscription_id = %s "
                "AND (feed_xid, feed_id) > (%s, %s)",
                (redelivery.rewind.xid, redelivery.rewind.id, self.id, *_pair(redelivery.rewind)),
            )
            self._raw.execute(
                "UPDATE webhook_redeliveries SET done_at = %s WHERE id = %s", (now, redelivery.id)
            )

    def finish(self, redelivery: Redelivery, now: datetime) -> None:
        with translated():
            self._raw.execute(
                "UPDATE webhook_redeliveries SET done_at = %s WHERE id = %s", (now, redelivery.id)
            )

    def record(self, progress: Progress) -> bool:
        """Write a round's progress; False when the subscription was deleted meanwhile."""
        with translated(), self._raw.transaction():
            found = self._raw.execute(
                "UPDATE webhook_positions SET feed_xid = COALESCE(%s, feed_xid), "
                "feed_id = COALESCE(%s, feed_id), attempts = %s, failing_since = %s, "
                "retry_at = %s, delivered_at = COALESCE(%s, delivered_at) "
                "WHERE subscription_id = %s RETURNING 1",
                (
                    None if progress.position is None else progress.position.xid,
                    None if progress.position is None else progress.position.id,
                    progress.failures,
                    progress.failing_since,
                    progress.retry_at,
                    progress.delivered_at,
                    self.id,
                ),
            ).fetchone()
            if found is None:
                return False
            if progress.attempts:
                with self._raw.cursor().copy(
                    "COPY webhook_deliveries (subscription_id, message_id, connection_id, "
                    "sequence, attempt, attempted_at, outcome, status_code, seconds, error, "
                    "redelivery) FROM STDIN"
                ) as copy:
                    for a in progress.attempts:
                        copy.write_row(
                            (
                                self.id,
                                a.message_id,
                                a.connection_id,
                                a.sequence,
                                a.attempt,
                                a.attempted_at,
                                a.outcome,
                                a.status_code,
                                a.seconds,
                                a.error,
                                a.redelivery,
                            )
                        )
            if progress.redelivery is not None and progress.redelivery_next is not None:
                self._raw.execute(
                    "UPDATE webhook_redeliveries SET next_sequence = %s WHERE id = %s",
                    (progress.redelivery_next, progress.redelivery.id),
                )
            if progress.pause_reason is not None:
                self._raw.execute(
                    "UPDATE webhook_subscriptions SET state = %s, paused_at = now(), "
                    "pause_reason = %s WHERE id = %s",
                    (FAILING, progress.pause_reason, self.id),
                )
        return True


def _pair(position: FeedPosition) -> tuple[int, int]:
    return position.xid, position.id
