"""Waiting for new rows in a relayed table without polling it (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

import threading

import psycopg
import sqlalchemy as sa

from syncstatus.store.database import SESSION_OPTIONS


class NewRows:
    """Returns from `wait` as soon as a transaction that inserted into `table` commits.

    Migration 0003's triggers notify `syncstatus_<table>` on commit, so a relay publishes a
    status change within milliseconds instead of at its next poll. The timeout keeps polling
    as the fallback: after a reconnect, or for notifications lost with a dropped connection.
    """

    def __init__(self, url: sa.URL, table: str) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = f"syncstatus_{table}"
        self._connection: psycopg.Connection | None = None

    def wait(self, stop: threading.Event, timeout_s: float) -> None:
        try:
            if self._connection is None:
                self._connection = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, options=SESSION_OPTIONS
                )
                self._connection.execute(f"LISTEN {self._channel}")
                return  # rows may have come before we listened: look once more
            for _ in self._connection.notifies(timeout=timeout_s, stop_after=1):
                pass
            for _ in self._connection.notifies(timeout=0):
                pass  # one look serves every commit so far
        except psycopg.Error:
            self.close()
            stop.wait(timeout_s)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
