"""Where a loop's time goes, statement by statement: `python -m bench.engine --statements`.

cProfile cannot say it: psycopg waits for the server inside Cython code it does not see, and
its own overhead inflates the Python side several times. Here each psycopg statement (execute,
executemany, COPY block, commit) is timed as it runs, in wall time and in this process's CPU
time: the CPU part is the client's (dumping parameters, formatting COPY rows, parsing results),
the rest is the server's (or waiting for a core). What is left of the loop's time outside the
statements is Python: decoding, deciding, building rows, encoding.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

Times = dict[str, list[float]]
"""Statement (its first words) -> [wall seconds, CPU seconds, calls]."""


@contextmanager
def timed_statements() -> Iterator[Times]:
    """Time every psycopg statement run in the block (psycopg's methods are put back after)."""
    times: Times = defaultdict(lambda: [0.0, 0.0, 0])
    cursor, connection = psycopg.Cursor, psycopg.Connection
    saved = (cursor.execute, cursor.executemany, cursor.copy, connection.commit)
    cursor.execute = _timed(times, cursor.execute, "")
    cursor.executemany = _timed(times, cursor.executemany, "executemany ")
    cursor.copy = _timed_copy(times, cursor.copy)
    connection.commit = _timed_commit(times, connection.commit)
    try:
        yield times
    finally:
        cursor.execute, cursor.executemany, cursor.copy, connection.commit = saved


def report(times: Times, events: int, loop_seconds: float) -> list[str]:
    """One line per statement, the costliest first, in µs per event."""
    lines = []
    spent = 0.0
    for name, (wall, cpu, calls) in sorted(times.items(), key=lambda item: -item[1][0]):
        spent += wall
        lines.append(
            f"  {1e6 * wall / events:6.1f} µs/event ({1e6 * cpu / events:5.1f} client CPU) "
            f"{int(calls):5d}x  {name}"
        )
    rest = 1e6 * (loop_seconds - spent) / events
    lines.append(f"  {rest:6.1f} µs/event outside statements (Python: decode, decide, encode)")
    return lines


def _name(query: Any) -> str:
    text = query.as_string(None) if hasattr(query, "as_string") else str(query)
    return re.sub(r"\s+", " ", text).strip()[:72]


def _add(times: Times, name: str, wall: float, cpu: float) -> None:
    entry = times[name]
    entry[0] += time.perf_counter() - wall
    entry[1] += time.process_time() - cpu
    entry[2] += 1


def _timed(times: Times, method: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    def timed(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return method(self, query, *args, **kwargs)
        finally:
            _add(times, prefix + _name(query), wall, cpu)

    return timed


def _timed_commit(times: Times, method: Callable[..., Any]) -> Callable[..., Any]:
    def commit(self: Any) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            method(self)
        finally:
            _add(times, "COMMIT", wall, cpu)

    return commit


def _timed_copy(times: Times, method: Callable[..., Any]) -> Callable[..., Any]:
    """A COPY block is timed from its start to its end, the rows written in it included."""

    @contextmanager
    def copy(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        wall, cpu = time.perf_counter(), time.process_time()
        with method(self, statement, *args, **kwargs) as block:
            yield block
        _add(times, _name(statement), wall, cpu)

    return copy
