"""Which database errors are outages to wait out, whichever layer raised them.

The hot path talks to psycopg directly, so its errors arrive unwrapped; the rest goes through
SQLAlchemy, which wraps them. A lock timeout, a deadlock, a serialization failure, PostgreSQL
out of shared memory for locks, a server shutting down: all are psycopg `OperationalError`s,
and all pass once retried.
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc

TRANSIENT: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)
"""Retry the work in hand: it was not wrong, the database could not do it now."""

DATABASE: tuple[type[Exception], ...] = (psycopg.Error, sqlalchemy.exc.DBAPIError)
"""Any error the database reported, for loops that log it and look again later."""
