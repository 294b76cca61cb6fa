"""Dead letters in PostgreSQL: the repository the engine and triage write through, and the
read side people triage with (list, show, the original bytes, the producers' scorecard).

What people read and redrive is confined to a scope (statemachine/workspaces.py): a dead letter
is in its connection's workspace, and one whose connection was never stored (a message that
never decoded, an early event of a connection never opened) is in none, so only an unscoped
reader sees it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from syncstatus.service.inbound import Headers, Origin, RejectedMessage
from syncstatus.statemachine.connection import Refusal
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.errors import translated
from syncstatus.store.rows import event_json, origin_json
from syncstatus.store.scopes import connection_in


class PostgresDeadLetters:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def add(
        self,
        refusals: Sequence[Refusal],
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
                event_json(r.event),
                origin_json(origins.get(r.event.event_id)),
                r.event.producer,
                r.event.app,
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
                event_json(m.event) if m.event else None,
                origin_json(m.origin),
                m.event.producer if m.event else None,
                m.event.app if m.event else None,
            )
            for m in rejected
        ]
        if rows:
            self._raw.cursor().executemany(
                "INSERT INTO dead_letters (reason, detail, event_id, connection_id, event_type, "
                "from_status, event, origin, producer, app) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

    def messages(self, dead_letter_ids: Sequence[int], scope: Scope) -> dict[int, Origin | None]:
        rows = self._raw.execute(
            "SELECT d.id, d.origin FROM dead_letters d WHERE d.id = ANY(%s) AND (%s::text IS NULL "
            "OR EXISTS (SELECT 1 FROM connections c WHERE c.connection_id = d.connection_id "
            "AND c.workspace_id = %s::text))",
            (list(dead_letter_ids), scope, scope),
        ).fetchall()
        return {i: None if origin is None else Origin.from_json(origin) for i, origin in rows}

    def redriven(self, dead_letter_ids: Sequence[int]) -> dict[int, uuid.UUID | None]:
        rows = self._raw.execute(
            "SELECT id, event_id FROM dead_letters WHERE id = ANY(%s) AND redriven_at IS NOT NULL",
            (list(dead_letter_ids),),
        ).fetchall()
        return dict(rows)

    def request_redrive(self, dead_letter_ids: Sequence[int], by: str, at: datetime) -> None:
        ids = list(dead_letter_ids)
        self._raw.execute(
            "UPDATE dead_letters SET redriven_at = %s, redriven_by = %s, "
            "redrive_count = redrive_count + 1 WHERE id = ANY(%s)",
            (at, by, ids),
        )
        self._raw.execute(
            "INSERT INTO redrives (dead_letter_id, requested_by, requested_at) "
            "SELECT id, %s, %s FROM unnest(%s::bigint[]) WITH ORDINALITY AS r(id, n) ORDER BY n",
            (by, at, ids),
        )


SORTABLE = {
    "refused_at": "d.refused_at",
    "id": "d.id",
    "reason": "d.reason",
    "producer": "d.producer",
    "app": "d.app",
    "connection_id": "d.connection_id",
    "redriven_at": "d.redriven_at",
}
"""What a dead-letter list may be sorted by; ties go by id, in the same direction."""

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_BUCKETS = 2000
"""Most buckets one scorecard spans, so one request cannot ask for an unbounded series."""


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters: every field set must match (times: refused in [since, until))."""

    connection_id: str | None = None
    app: str | None = None
    producer: str | None = None
    reason: str | None = None
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    redriven: bool | None = None

    def where(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """The WHERE clause over `dead_letters d` and its parameters, confined to `scope`:
        values are always bound, never spliced into the SQL."""
        equal = {
            "d.connection_id": self.connection_id,
            "d.app": self.app,
            "d.producer": self.producer,
            "d.reason": self.reason,
            "d.origin->>'topic'": self.topic,
        }
        clauses, params = [], {}
        for n, (column, value) in enumerate(equal.items()):
            if value is not None:
                clauses.append(f"{column} = :p{n}")
                params[f"p{n}"] = value
        if self.since is not None:
            clauses.append("d.refused_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("d.refused_at < :until")
            params["until"] = self.until
        if self.redriven is not None:
            clauses.append(f"d.redriven_at IS {'NOT ' if self.redriven else ''}NULL")
        confined, scoped = connection_in("d.connection_id", scope)
        params.update(scoped)
        return "WHERE " + " AND ".join(["true", *clauses]) + confined, params


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    id: int
    reason: str
    detail: str
    event_id: uuid.UUID | None
    connection_id: str | None
    event_type: str | None
    from_status: int | None
    producer: str | None
    app: str | None
    topic: str | None
    refused_at: datetime
    published_at: datetime | None
    redriven_at: datetime | None
    redriven_by: str | None
    redrive_count: int


@dataclass(frozen=True, slots=True)
class RedriveLine:
    requested_by: str
    requested_at: datetime
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterDetail:
    summary: DeadLetterSummary
    origin: Origin | None
    event: dict[str, Any] | None
    redrives: list[RedriveLine]

    @property
    def headers(self) -> Headers:
        return () if self.origin is None else self.origin.headers


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetterSummary]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class ScoreLine:
    """Refusals of one producer (None: messages that never decoded) for one reason."""

    producer: str | None
    reason: str
    count: int
    bucket: datetime | None = None


@dataclass(frozen=True, slots=True)
class Scorecard:
    since: datetime
    until: datetime
    bucket: str
    totals: list[ScoreLine]
    """Per producer and reason over the whole range, most refusals first."""
    series: list[ScoreLine]
    """Per bucket, producer and reason, oldest bucket first; empty buckets left out."""


_SUMMARY = (
    "d.id, d.reason, d.detail, d.event_id, d.connection_id, d.event_type, d.from_status, "
    "d.producer, d.app, d.origin->>'topic', d.refused_at, d.published_at, d.redriven_at, "
    "d.redriven_by, d.redrive_count"
)
_SUMMARY_COLUMNS = len(_SUMMARY.split(", "))


class DeadLetterQueries:
    """Dead letters, read for people (API and CLI), never on the hot path."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def original(self, dead_letter_id: int, *, scope: Scope) -> bytes | None:
        """The refused message's value as it came in (None: no such dead letter in `scope`, or
        one the service raised itself and so has no message)."""
        confined, params = connection_in("d.connection_id", scope)
        with translated(), self.engine.connect() as connection:
            origin = connection.execute(
                sa.text(f"SELECT d.origin FROM dead_letters d WHERE d.id = :id{confined}"),
                {"id": dead_letter_id, **params},
            ).scalar()
        return None if origin is None else Origin.from_json(origin).value

    def list(
        self,
        where: DeadLetterFilter | None = None,
        sort: str = "refused_at",
        descending: bool = True,
        page: int = 1,
        page_size: int = 50,
        *,
        scope: Scope,
    ) -> DeadLetterPage:
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}; one of {', '.join(SORTABLE)}")
        clause, params = (where or DeadLetterFilter()).where(scope)
        direction = "DESC" if descending else "ASC"
        order = f"{SORTABLE[sort]} {direction} NULLS LAST, d.id {direction}"
        with translated(), self.engine.connect() as connection:
            total = connection.execute(
                sa.text(f"SELECT count(*) FROM dead_letters d {clause}"), params
            ).scalar_one()
            rows = connection.execute(
                sa.text(
                    f"SELECT {_SUMMARY} FROM dead_letters d {clause} ORDER BY {order} "
                    "LIMIT :limit OFFSET :offset"
                ),
                {**params, "limit": page_size, "offset": (page - 1) * page_size},
            ).all()
        return DeadLetterPage([DeadLetterSummary(*r) for r in rows], total, page, page_size)

    def ids(self, where: DeadLetterFilter, limit: int, *, scope: Scope) -> list[int]:
        """The oldest `limit` dead letters in `scope` that match, in the order they were
        refused."""
        clause, params = where.where(scope)
        with translated(), self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.text(f"SELECT d.id FROM dead_letters d {clause} ORDER BY d.id LIMIT :n"),
                    {**params, "n": limit},
                ).scalars()
            )

    def show(self, dead_letter_id: int, *, scope: Scope) -> DeadLetterDetail | None:
        confined, params = connection_in("d.connection_id", scope)
        with translated(), self.engine.connect() as connection:
            row = connection.execute(
                sa.text(
                    f"SELECT {_SUMMARY}, d.event, d.origin FROM dead_letters d "
                    f"WHERE d.id = :id{confined}"
                ),
                {"id": dead_letter_id, **params},
            ).first()
            if row is None:
                return None
            redrives = connection.execute(
                sa.text(
                    "SELECT requested_by, requested_at, published_at FROM redrives "
                    "WHERE dead_letter_id = :id ORDER BY id"
                ),
                {"id": dead_letter_id},
            ).all()
        event, origin = row[_SUMMARY_COLUMNS:]
        return DeadLetterDetail(
            DeadLetterSummary(*row[:_SUMMARY_COLUMNS]),
            None if origin is None else Origin.from_json(origin),
            event,
            [RedriveLine(*r) for r in redrives],
        )

    def scorecard(
        self,
        since: datetime,
        until: datetime,
        bucket: str = "hour",
        producer: str | None = None,
        *,
        scope: Scope,
    ) -> Scorecard:
        """Refusals in `scope` per producer and reason refused in [since, until), and per
        bucket (UTC)."""
        if bucket not in BUCKETS:
            raise ValueError(f"no bucket {bucket!r}; one of {', '.join(BUCKETS)}")
        if until <= since:
            raise ValueError("until must come after since")
        if (until - since) / BUCKETS[bucket] > MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} buckets of a {bucket}; narrow the range")
        clause, params = DeadLetterFilter(producer=producer, since=since, until=until).where(scope)
        start = f"date_trunc('{bucket}', d.refused_at, 'UTC')"
        with translated(), self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    f"SELECT {start}, d.producer, d.reason, count(*) FROM dead_letters d "
                    f"{clause} GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS LAST, 3"
                ),
                params,
            ).all()
        series = [ScoreLine(p, r, n, b) for b, p, r, n in rows]
        totals: Counter[tuple[str | None, str]] = Counter()
        for line in series:
            totals[line.producer, line.reason] += line.count
        ranked = sorted(
            totals.items(), key=lambda t: (-t[1], t[0][0] is None, t[0][0] or "", t[0][1])
        )
        return Scorecard(since, until, bucket, [ScoreLine(p, r, n) for (p, r), n in ranked], series)
