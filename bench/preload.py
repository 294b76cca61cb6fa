"""Databases for the benchmarks: migrated once, cloned per loop, preloaded with N connections.

A preloaded connection holds exactly the rows the engine writes for one whole session
(Authorization → Synced, its status records published): they are copied from a real engine
run of one connection and replicated with COPY under new ids, so the preload never drifts
from what the engine writes and costs seconds per 100,000 connections instead of minutes.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from tests.helpers.streams import stream

from syncstatus.devtools.embedded import LOOPBACK, EmbeddedPostgres
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound
from syncstatus.statemachine.connection import Policy
from syncstatus.store.database import SESSION_OPTIONS, create_engine, migrate
from syncstatus.store.uow import PostgresStore

TEMPLATE_CONNECTION = "tpl-0"
TEMPLATE_SESSION = "tpl-session-0"
PRELOADED = "pre"
"""Preloaded connection i is `pre-i` with session `pre-session-i`: no measured stream uses the
prefix, so the measured connections are new and the preloaded ones only make the tables big."""
CHUNK = 2000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PUBLISHED = "published_at"


def libpq(url: str) -> str:
    """The libpq URL of a SQLAlchemy one, for psycopg without SQLAlchemy."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def connect(url: str, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection with the session options the service's engine sets."""
    return psycopg.connect(libpq(url), options=SESSION_OPTIONS, autocommit=autocommit)


def migrated(server: EmbeddedPostgres) -> str:
    """An empty database at the schema's head, to clone from."""
    url = server.create_database(f"template_{uuid.uuid4().hex[:8]}")
    db = create_engine(url)
    migrate(db)
    db.dispose()
    return url


def clone(server: EmbeddedPostgres, template_url: str, name: str) -> str:
    """A copy of a database nobody is connected to: file by file, so a preloaded database of
    gigabytes is copied in seconds instead of being written again through the WAL."""
    target = f"{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        host=LOOPBACK, port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(target), sql.Identifier(template_url.rsplit("/", 1)[1])
            )
        )
    return server.url_for(target)


def preload(server: EmbeddedPostgres, template_url: str, connections: int) -> str:
    """A clone of `template_url` holding `connections` whole sessions, vacuumed, analyzed and
    checkpointed so that neither autovacuum nor a checkpoint lands in the measured loop."""
    url = clone(server, template_url, f"preloaded_{connections}")
    lines = template_lines(server, template_url)
    with connect(url) as conn, _indexes_built_after(conn, list(lines)):
        for table, (columns, fmt) in lines.items():
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for chunk in _replicated(fmt, connections):
                    copy.write(chunk)
    with connect(url, autocommit=True) as conn:
        for table in lines:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        conn.execute("CHECKPOINT")
    return url


@contextmanager
def _indexes_built_after(conn: psycopg.Connection, tables: list[str]) -> Iterator[None]:
    """Drop the tables' keys and indexes for the block and build them again after it: a sort
    per index instead of one random descent per row, three times faster at 1,000,000
    connections. The rebuilt indexes are packed tighter than grown ones, so the first random
    inserts into them split a few more pages: the preloaded database is, if anything, slower."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY(%s)",
        (tables,),
    ).fetchall()
    owned = {name for _, name, _ in constraints}
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename = ANY(%s)",
        (tables,),
    ).fetchall()
    indexes = [(name, definition) for name, definition in indexes if name not in owned]
    for table, name, _ in constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(*map(sql.Identifier, (table, name)))
        )
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    conn.execute("SET maintenance_work_mem = '1GB'")
    for table, name, definition in constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(*map(sql.Identifier, (table, name)))
            + sql.SQL(definition)
        )
    for _, definition in indexes:
        conn.execute(sql.SQL(definition))


def template_lines(server: EmbeddedPostgres, template_url: str) -> dict[str, tuple[str, str]]:
    """table -> (columns, the COPY text of one connection's rows as a format string with
    {c} for its id, {s} for its session and {u[k]} for the k-th event id).

    The rows come from the engine applying one whole session to a scratch database; the
    status records are marked published, as they are once the relay has run."""
    url = clone(server, template_url, "scratch")
    db = create_engine(url)
    StatusEngine(PostgresStore(db), Policy()).apply_batch(
        [Inbound(e) for e in stream(1, prefix="tpl", producer="bench")]
    )
    db.dispose()
    lines: dict[str, tuple[str, str]] = {}
    with connect(url) as conn:
        for table, columns, where in _tables(conn):
            select = ", ".join(f"coalesce({c}, now())" if c == _PUBLISHED else c for c in columns)
            text = _copy_out(conn, f"SELECT {select} FROM {table} WHERE {where}")
            if text:
                lines[table] = (", ".join(columns), _format_string(text))
    _drop(server, url)
    return lines


def _tables(conn: psycopg.Connection) -> Iterator[tuple[str, list[str], str]]:
    """Each table that holds rows of a connection, the columns it is written with (not the
    generated ones) and how to select the template connection's rows."""
    rows = conn.execute(
        "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE table_schema = 'public' "
        "AND is_identity = 'NO' AND coalesce(column_default, '') NOT LIKE 'nextval%%' "
        "GROUP BY table_name ORDER BY table_name"
    ).fetchall()
    for table, columns in rows:
        if "connection_id" in columns:
            yield table, columns, f"connection_id = '{TEMPLATE_CONNECTION}'"
        elif table == "processed_events":
            yield (
                table,
                columns,
                "event_id IN (SELECT event_id FROM status_history "
                f"WHERE connection_id = '{TEMPLATE_CONNECTION}')",
            )


def _copy_out(conn: psycopg.Connection, query: str) -> str:
    with conn.cursor().copy(f"COPY ({query}) TO STDOUT") as copy:
        return b"".join(bytes(data) for data in copy).decode()


def _format_string(text: str) -> str:
    text = text.replace("{", "{{").replace("}", "}}")
    text = text.replace(TEMPLATE_SESSION, "{s}").replace(TEMPLATE_CONNECTION, "{c}")
    for k, event_id in enumerate(dict.fromkeys(_UUID.findall(text))):
        text = text.replace(event_id, f"{{u[{k}]}}")
    return text


def _replicated(fmt: str, connections: int) -> Iterator[str]:
    """The rows of every preloaded connection, CHUNK connections per string. Event ids are
    random-looking but the same in every table (and every run): a hash of the connection's
    number, so status_history and processed_events agree without keeping 14 ids per row."""
    count = fmt.count("{u[")
    ids = max((int(m) for m in re.findall(r"\{u\[(\d+)\]\}", fmt)), default=-1) + 1
    for start in range(0, connections, CHUNK):
        parts = []
        for i in range(start, min(start + CHUNK, connections)):
            u = _event_ids(i, ids) if count else ()
            parts.append(fmt.format(c=f"{PRELOADED}-{i}", s=f"{PRELOADED}-session-{i}", u=u))
        yield "".join(parts)


def _event_ids(i: int, count: int) -> list[str]:
    digest = hashlib.shake_128(i.to_bytes(8, "little")).hexdigest(16 * count)
    return [digest[32 * k : 32 * (k + 1)] for k in range(count)]


def _drop(server: EmbeddedPostgres, url: str) -> None:
    with psycopg.connect(
        host=LOOPBACK, port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(url.rsplit("/", 1)[1])))


def timed_preload(
    server: EmbeddedPostgres, template_url: str, connections: int
) -> tuple[str, float]:
    started = time.perf_counter()
    url = preload(server, template_url, connections)
    return url, time.perf_counter() - started
