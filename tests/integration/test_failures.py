"""A producer's failure class, kept with the history on PostgreSQL and published with the
status record."""

from __future__ import annotations

from dataclasses import replace

from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.service.engine import StatusEngine
from syncstatus.statemachine.connection import Policy
from syncstatus.statemachine.events import EventType, Failure, FailureClass
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.outbox import OutboxStore
from syncstatus.store.queries import ConnectionQueries
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import event

E = EventType


def test_the_failure_is_stored_published_and_read_by_the_view(db_engine):
    engine = StatusEngine(PostgresStore(db_engine), Policy())
    for kind in (E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED):
        engine.apply_event(event(kind))
    failure = Failure(FailureClass.CREDENTIALS, False, "invalid_grant")
    engine.apply_event(replace(event(E.LOADING_FAILED, error="token revoked"), failure=failure))
    with OutboxStore(db_engine).status_changes(10) as batch:
        transitions = [t for _, t in batch.items]
    assert [t.failure for t in transitions] == [None, None, None, failure]
    record = StatusChangeMessages().decode(StatusChangeMessages().encode(transitions[-1]))
    assert (record["failure_class"], record["failure_retryable"], record["failure_code"]) == (
        "credentials",
        False,
        "invalid_grant",
    )
    (line,) = ConnectionQueries(db_engine).list(scope=ALL).items
    assert (line.credentials, line.credentials_error, line.can_extract) == (
        "Error",
        "token revoked",
        False,
    )
    assert (line.status_error, line.status_failure_class) == ("token revoked", "credentials")
