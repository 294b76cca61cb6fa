"""The change feed: status_history read in commit order, after a cursor.

Ids from a sequence are not commit-ordered: two transactions can commit in the opposite order
of their ids, and a reader that moved past the higher id would skip the lower one for good.
So each status_history row carries `feed_xid` (migration 0013): the greater of its own
transaction's id and the newest transaction id completed when the row was written (the
statement's snapshot `xmax - 1`). A reader takes only rows whose `feed_xid` is older than the
oldest transaction still running (`pg_snapshot_xmin`): every transaction that could still add
a row at or before that point has ended, so the rows before it are final, and the position
(`feed_xid`, `feed_id`) of the last one read is a cursor nothing can later appear behind.

Why not the transaction id alone: a transaction takes its id at its first write (its event
claims) and may wait for a connection's lock afterwards, so a connection's next record could
carry an older transaction id than the one before it. The snapshot part fixes that: a writer
holds the connection's lock from load to commit, so the next writer's statement sees the
previous one completed and stamps at least its id; `feed_id`, taken at insert, breaks ties.
Per connection the feed is therefore in sequence order, which webhooks rely on.

A record reaches the feed once every transaction older than it has ended: a long write
transaction anywhere on the PostgreSQL instance delays the feed (never loses a record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from syncstatus.schemas.changes import ERROR_CODES, ChangeFilter, FeedPosition
from syncstatus.statemachine.connection import Transition
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.errors import translated
from syncstatus.store.rows import HISTORY_COLUMNS, transition_from_row

HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
"""The oldest transaction still running: rows with an older feed_xid are final."""
FEED_COLUMNS = "h.feed_xid, h.feed_id, " + ", ".join(f"h.{c}" for c in HISTORY_COLUMNS)


@dataclass(frozen=True, slots=True)
class Change:
    position: FeedPosition
    transition: Transition


@dataclass(frozen=True, slots=True)
class FeedPage:
    """The records wanted after a position, and how far the read looked: past records the
    filter did not want too, so the next read starts there."""

    changes: list[Change]
    scanned_to: FeedPosition
    """Past the records the filter did not want too, within the scope only: a reader confined
    to a workspace learns nothing of another's, not even that its records exist."""
    full: bool
    """The page was cut at its limit: more may follow at once."""


def filter_clause(where: ChangeFilter, scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """The SQL of `ChangeFilter.matches` over status_history `h`, confined to `scope`; None
    when the filter names a workspace outside the scope (nothing can match)."""
    workspace = where.workspace
    if scope is not None:
        if workspace not in (None, scope):
            return None
        workspace = scope
    clauses, params = [], {}
    if workspace is not None:
        clauses.append("h.workspace_id = %(f_workspace)s")
        params["f_workspace"] = workspace
    if where.apps is not None:
        clauses.append("h.app = ANY(%(f_apps)s)")
        params["f_apps"] = sorted(where.apps)
    if where.statuses is not None:
        clauses.append("h.to_status = ANY(%(f_statuses)s)")
        params["f_statuses"] = sorted(where.statuses)
    if where.errors_only:
        clauses.append("h.to_status = ANY(%(f_errors)s)")
        params["f_errors"] = list(ERROR_CODES)
    return " AND ".join(clauses) or "true", params


def change_from_row(row: Sequence[Any]) -> Change:
    return Change(FeedPosition(row[0], row[1]), transition_from_row(row[2:]))


def read_page(
    raw: Any, after: FeedPosition, where: ChangeFilter, scope: Scope, limit: int
) -> FeedPage:
    """The final records after `after` that `where` wants, oldest first, at most `limit`.

    One statement, so one snapshot: the records and how far it looked agree (the last final
    record after `after` within the scope, wanted or not, comes with every row)."""
    clause = filter_clause(where, scope)
    if clause is None:
        return FeedPage([], after, False)
    condition, params = clause
    params.update(xid=after.xid, id=after.id, limit=limit)
    ahead = f"(h.feed_xid, h.feed_id) > (%(xid)s, %(id)s) AND h.feed_xid < {HORIZON}"
    confined = "" if scope is None else " AND h.workspace_id = %(f_workspace)s"
    rows = raw.execute(
        "WITH last AS (SELECT h.feed_xid, h.feed_id FROM status_history h "
        f"WHERE {ahead}{confined} ORDER BY h.feed_xid DESC, h.feed_id DESC LIMIT 1), "
        f"wanted AS (SELECT {FEED_COLUMNS} FROM status_history h WHERE {ahead} AND {condition} "
        "ORDER BY h.feed_xid, h.feed_id LIMIT %(limit)s) "
        "SELECT last.feed_xid, last.feed_id, wanted.* FROM last LEFT JOIN wanted ON true "
        "ORDER BY wanted.feed_xid, wanted.feed_id",
        params,
    ).fetchall()
    if not rows:
        return FeedPage([], after, False)
    changes = [change_from_row(row[2:]) for row in rows if row[2] is not None]
    if len(changes) == limit:
        return FeedPage(changes, changes[-1].position, True)
    return FeedPage(changes, FeedPosition(rows[0][0], rows[0][1]), False)


def head(raw: Any) -> FeedPosition:
    """Where the feed's final part ends now: a reader starting here gets every record that
    becomes final from now on, and none before."""
    (horizon,) = raw.execute(f"SELECT {HORIZON}").fetchone()
    return FeedPosition(horizon, 0)


def count_after(raw: Any, after: FeedPosition, where: ChangeFilter, cap: int) -> int:
    """How many recorded changes `where` wants after `after` (final or not), up to `cap`."""
    clause = filter_clause(where, None)
    if clause is None:
        return 0
    condition, params = clause
    params.update(xid=after.xid, id=after.id, cap=cap)
    (count,) = raw.execute(
        "SELECT count(*) FROM (SELECT 1 FROM status_history h WHERE "
        f"(h.feed_xid, h.feed_id) > (%(xid)s, %(id)s) AND {condition} LIMIT %(cap)s) AS ahead",
        params,
    ).fetchone()
    return int(count)


def connection_changes(
    raw: Any, connection_id: str, after_sequence: int, limit: int, scope: Scope
) -> list[Change] | None:
    """A connection's records after `after_sequence`, in sequence order; None when it has
    none at all within `scope`. No horizon is needed: a connection's records commit in
    sequence order (each writer holds its lock), so what is visible is always a prefix."""
    confined = "" if scope is None else " AND h.workspace_id = %(scope)s"
    params = {"c": connection_id, "after": after_sequence, "limit": limit, "scope": scope}
    rows = raw.execute(
        f"SELECT {FEED_COLUMNS} FROM status_history h WHERE h.connection_id = %(c)s "
        f"AND h.sequence > %(after)s{confined} ORDER BY h.sequence LIMIT %(limit)s",
        params,
    ).fetchall()
    if rows:
        return [change_from_row(row) for row in rows]
    known = raw.execute(
        f"SELECT 1 FROM status_history h WHERE h.connection_id = %(c)s{confined} LIMIT 1", params
    ).fetchone()
    return [] if known else None


class ChangeQueries:
    """The feed, read for the API (catch-up and the change stream)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def after(
        self, position: FeedPosition, where: ChangeFilter, limit: int, *, scope: Scope
    ) -> FeedPage:
        with translated(), self.engine.connect() as connection:
            return read_page(connection.connection.driver_connection, position, where, scope, limit)

    def head(self) -> FeedPosition:
        with translated(), self.engine.connect() as connection:
            return head(connection.connection.driver_connection)

    def of_connection(
        self, connection_id: str, after_sequence: int, limit: int, *, scope: Scope
    ) -> list[Change] | None:
        with translated(), self.engine.connect() as connection:
            raw = connection.connection.driver_connection
            return connection_changes(raw, connection_id, after_sequence, limit, scope)
