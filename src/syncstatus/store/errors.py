"""Database errors, translated at the store's edge into the errors of the service's ports.

The hot path talks to psycopg directly, so its errors arrive unwrapped; the rest goes through
SQLAlchemy, which wraps them. A lock timeout, a deadlock, a serialization failure, PostgreSQL
out of shared memory for locks, a server shutting down: all are psycopg `OperationalError`s,
and all pass once retried, so they become StoreUnavailable. Any other error the database
reports becomes StoreError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc

from syncstatus.service.ports import StoreError, StoreUnavailable

TRANSIENT: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)
DATABASE: tuple[type[Exception], ...] = (psycopg.Error, sqlalchemy.exc.DBAPIError)


@contextmanager
def translated() -> Iterator[None]:
    """Raise the port's error, from the database's, for anything the block raises."""
    try:
        yield
    except TRANSIENT as error:
        raise StoreUnavailable(first_line(error)) from error
    except DATABASE as error:
        raise StoreError(first_line(error)) from error


def first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]
