"""Did two loops write the same rows and publish the same records? The check that keeps the
engine/ceiling ratio honest: a ceiling that skipped a table or a column would look faster.

Every table of the schema is compared, so a table or column added later is compared too
without touching this file: its row count, and every row of a sample of the measured
connections (and of their event ids, for tables keyed by event). Values the run gives (`now()`
at write time, transaction ids) differ between any two runs and are compared as present or absent;
generated ids are compared as their order within their connection, which is what a reader of
the relayed tables relies on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import psycopg

from bench.preload import connect
from syncstatus.schemas.messages import StatusChangeMessages

RUN_COLUMNS = frozenset(
    {"processed_at", "created_at", "status_changed_at", "recorded_at", "feed_xid"}
)
"""Given by the run, not by the events: the clock at the time of the write (the column default
or the batch's now), and the transaction id the change feed orders by."""
SAMPLE = 200


@dataclass(frozen=True, slots=True)
class Comparison:
    counts: dict[str, tuple[int, int]]
    rows_compared: int
    records_compared: int
    problems: list[str]

    def summary(self) -> str:
        counted = ", ".join(f"{t} {a:,}" for t, (a, _) in self.counts.items() if a)
        verdict = "equal" if not self.problems else "DIFFERENT: " + "; ".join(self.problems[:5])
        return (
            f"check, ceiling vs engine: {verdict} (row counts: {counted}; {self.rows_compared:,} "
            f"rows of {SAMPLE} connections compared column by column; "
            f"{self.records_compared:,} status records decoded and compared)"
        )


def compare(
    engine_url: str,
    ceiling_url: str,
    connection_ids: Sequence[str],
    event_ids: Sequence[Any],
    records: tuple[Sequence[bytes], Sequence[bytes]],
) -> Comparison:
    """Counts of every table, the rows of a sample of `connection_ids` and `event_ids`, and the
    StatusChanged records each loop encoded (all of them, matched by connection and sequence)."""
    picked = random.Random(0).sample(range(len(connection_ids)), min(SAMPLE, len(connection_ids)))
    sample = sorted({connection_ids[i] for i in picked})
    events = [event_ids[i] for i in random.Random(1).sample(range(len(event_ids)), SAMPLE)]
    problems: list[str] = []
    counts: dict[str, tuple[int, int]] = {}
    compared = 0
    with connect(engine_url) as a, connect(ceiling_url) as b:
        for table, query in _queries(a):
            counts[table] = (_count(a, table), _count(b, table))
            if counts[table][0] != counts[table][1]:
                problems.append(f"{table}: {counts[table][0]} rows against {counts[table][1]}")
            params = {"connections": sample, "events": events}
            rows_a, rows_b = (sorted(c.execute(query, params).fetchall(), key=repr) for c in (a, b))
            compared += len(rows_a)
            if rows_a != rows_b:
                diff = next((x, y) for x, y in zip_longest(rows_a, rows_b) if x != y)
                problems.append(f"{table} differs: engine {diff[0]} / ceiling {diff[1]}")
    problems += _compare_records(*records)
    return Comparison(counts, compared, len(records[0]), problems)


def _queries(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """For each table, the query selecting its comparable columns for the sampled ids: whole
    connections where it has a connection_id (so ranks within a connection are complete),
    sampled events where it has only an event_id, and the whole table otherwise."""
    tables = conn.execute(
        "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position), "
        "array_agg(is_identity = 'YES' OR coalesce(column_default, '') LIKE 'nextval%%' "
        "ORDER BY ordinal_position) FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'alembic_version' "
        "GROUP BY table_name ORDER BY table_name"
    ).fetchall()
    queries = []
    for table, columns, generated in tables:
        keyed = "connection_id" in columns
        select = []
        for column, is_generated in zip(columns, generated, strict=True):
            if is_generated:
                partition = "PARTITION BY connection_id " if keyed else ""
                select.append(f"row_number() OVER ({partition}ORDER BY {column})")
            elif column in RUN_COLUMNS:
                select.append(f"{column} IS NULL")
            else:
                select.append(column)
        where = ""
        if keyed:
            where = " WHERE connection_id = ANY(%(connections)s)"
        elif "event_id" in columns:
            where = " WHERE event_id = ANY(%(events)s)"
        queries.append((table, f"SELECT {', '.join(select)} FROM {table}{where}"))
    return queries


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _compare_records(engine: Sequence[bytes], ceiling: Sequence[bytes]) -> list[str]:
    """Each StatusChanged record decoded, keyed by (connection, sequence); recorded_at is the
    batch's clock and compared as present."""
    messages = StatusChangeMessages()

    def keyed(records: Sequence[bytes]) -> dict[tuple[str, int], dict[str, Any]]:
        decoded = (messages.decode(r) for r in records)
        return {
            (d["connection_id"], d["sequence"]): {**d, "recorded_at": d["recorded_at"] is None}
            for d in decoded
        }

    a, b = keyed(engine), keyed(ceiling)
    if len(a) != len(engine) or len(b) != len(ceiling):
        return ["a status record was encoded twice"]
    if a == b:
        return []
    key = next((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), None)
    return [f"status record {key}: engine {a.get(key)} / ceiling {b.get(key)}"]
