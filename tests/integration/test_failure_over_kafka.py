"""A producer's failure class through the real broker into the running service: the status
record carries it, the connections view shows what the oracle predicts (a `credentials` failure
makes the credentials Error, another class leaves them Active, error text alone reads as
unknown), and /metrics counts each failure by app and class."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from syncstatus.schemas.messages import EventMessages
from syncstatus.statemachine.events import EventType, Failure, FailureClass, SessionEvent
from syncstatus.statemachine.runs import RunOutcome
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.database import create_engine
from syncstatus.store.queries import ConnectionQueries
from tests.helpers.factories import event
from tests.helpers.oracle import expected

from .support import (
    OutputReader,
    http_get,
    latest_status,
    publisher_for,
    running_service,
    settings_for,
)

E = EventType
APP = "facebook_ads"
FAILURES = {
    "cred": ("token revoked", Failure(FailureClass.CREDENTIALS, False, "invalid_grant")),
    "limited": ("slow down", Failure(FailureClass.RATE_LIMIT, True, "429")),
    "text-only": ("source answered 503", None),
}


def session(connection_id: str, start: datetime) -> list[SessionEvent]:
    """Authorized, loading, then a loading failure as FAILURES says."""
    kinds = [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED]
    events = [
        event(
            kind,
            connection_id,
            f"{connection_id}:s1",
            at=start + timedelta(seconds=i),
            app=APP,
            producer="auth" if kind.name.startswith("AUTH") else "loader",
            attributes={"credential_id": f"cred-{connection_id}"}
            if kind is E.AUTHORIZATION_SUCCEEDED
            else None,
        )
        for i, kind in enumerate(kinds)
    ]
    error, failure = FAILURES[connection_id]
    failed = event(
        E.LOADING_FAILED,
        connection_id,
        f"{connection_id}:s1",
        at=start + timedelta(seconds=len(kinds)),
        app=APP,
        producer="loader",
        error=error,
    )
    return [*events, replace(failed, failure=failure)]


def metric_lines(port: int) -> set[str]:
    return set(http_get(port, "/metrics/")[1].splitlines())


def test_a_credentials_failure_through_kafka_reaches_the_record_the_view_and_the_metrics(
    kafka, database_url
):
    settings = settings_for(kafka, database_url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    stories = {cid: session(cid, start) for cid in FAILURES}
    codec = EventMessages()
    for events in stories.values():  # what goes on the wire keeps the failure record
        assert codec.decode(codec.encode(events[-1])).failure == events[-1].failure
    reader, publisher = OutputReader(settings), publisher_for(settings)
    with running_service(settings):
        for events in stories.values():
            for e in events:
                publisher.publish(e)
        publisher.flush()
        seen = reader.wait_for(
            lambda seen: all(latest_status(seen.changes[cid]) == 11 for cid in FAILURES), 60
        )
        wanted = {
            f'syncstatus_failures_total{{app="{APP}",class="{c}"}} 1.0'
            for c in ("credentials", "rate_limit", "unknown")
        }
        deadline = time.monotonic() + 15  # counted once the consumer's transaction committed
        while not wanted <= (lines := metric_lines(settings.metrics_port)):
            assert time.monotonic() < deadline, sorted(
                line for line in lines if line.startswith("syncstatus_failures")
            )
            time.sleep(0.2)
    publisher.close()
    reader.close()

    failed = {cid: max(seen.changes[cid], key=lambda c: c["sequence"]) for cid in FAILURES}
    assert (
        failed["cred"]["failure_class"],
        failed["cred"]["failure_retryable"],
        failed["cred"]["failure_code"],
        failed["cred"]["error"],
    ) == ("credentials", False, "invalid_grant", "token revoked")
    assert (failed["limited"]["failure_class"], failed["limited"]["failure_retryable"]) == (
        "rate_limit",
        True,
    )
    assert (
        failed["text-only"]["failure_class"],
        failed["text-only"]["failure_retryable"],
        failed["text-only"]["failure_code"],
    ) == ("unknown", None, None)
    earlier = [c for cid in FAILURES for c in seen.changes[cid] if c["to_code"] != 11]
    assert all(c["failure_class"] is None for c in earlier)

    engine = create_engine(database_url)
    try:
        queries = ConnectionQueries(engine)
        for cid, events in stories.items():
            want = expected(events, frozenset())
            line = queries.connection(cid, scope=ALL).summary
            assert line.credentials == ("Active" if want.credentials_valid else "Error"), cid
            assert (line.status_error, line.status_failure_class) == (
                want.status_error,
                want.failure_class,
            ), cid
            assert line.can_extract is False  # no accounts listed yet, whatever the class
            assert (
                line.source_sync.state.value,
                line.source_sync.started_at,
                line.source_sync.failed_at,
                line.source_sync.error,
            ) == (
                want.source_sync.state,
                want.source_sync.started_at,
                want.source_sync.failed_at,
                want.source_sync.error,
            ), cid
        cred = queries.connection("cred", scope=ALL).summary
        assert (cred.credentials, cred.credentials_error) == ("Error", "token revoked")
        assert cred.source_sync.state is RunOutcome.ERROR
        assert cred.reauthorization_failed_at is None
        assert queries.connection("limited", scope=ALL).summary.credentials_error is None
    finally:
        engine.dispose()
