"""Staged writes: rows copied in binary into a temporary table of this session, then written
to their table by one INSERT … SELECT or UPDATE … FROM.

An `unnest` statement would take the same rows as array parameters, and psycopg dumps those
element by element in Python; binary COPY formats its rows in C. For connection_view that is
about half the client CPU per row (`python -m bench.engine --statements` shows each statement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from syncstatus.store.rows import column_types


@dataclass(frozen=True, slots=True)
class Staging:
    """A temporary table shaped like some of `table`'s columns (and `extra` ones, each named
    after a column whose type it takes), emptied at every commit."""

    name: str
    columns: tuple[str, ...]
    prepare: str
    copy: str
    types: tuple[str, ...]


@cache
def staging(table: str, listed: str, extra: tuple[tuple[str, str], ...] = ()) -> Staging:
    """`listed`: the columns as a statement lists them ("a, b, c"); `extra`: (name, column of
    `table` whose type it has), e.g. the version a row expects."""
    name = f"staged_{table}"
    columns = tuple(column.strip() for column in listed.split(","))
    selected = [*columns, *(f"{like} AS {extra_name}" for extra_name, like in extra)]
    names = (*columns, *(extra_name for extra_name, _ in extra))
    types = column_types(table, [*columns, *(like for _, like in extra)])
    prepare = (
        f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "
        f"SELECT {', '.join(selected)} FROM {table} WITH NO DATA; DELETE FROM {name}"
    )
    copy = f"COPY {name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    return Staging(name, names, prepare, copy, types)


def stage(raw: Any, into: Staging, rows: Iterable[Sequence[Any]]) -> str:
    """Copy the rows into the staging table, emptied first (a transaction may stage twice);
    return its name for the statement that reads it."""
    raw.execute(into.prepare)
    with raw.cursor().copy(into.copy) as copy:
        copy.set_types(into.types)
        for row in rows:
            copy.write_row(row)
    return into.name
