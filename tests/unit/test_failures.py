"""Failure classes: what a producer says of a failure, and what follows from it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from syncstatus.runtime.metrics import Metrics
from syncstatus.schemas.messages import EventMessages, StatusChangeMessages
from syncstatus.service.engine import BatchResult
from syncstatus.statemachine.connection import Connection, Outcome, Policy
from syncstatus.statemachine.events import EventType, Failure, FailureClass
from syncstatus.statemachine.view import project
from tests.helpers.factories import T0, event

E = EventType
NOW = T0 + timedelta(hours=1)


def failed(kind: EventType, failure_class: FailureClass | None, error: str = "refused"):
    failure = None if failure_class is None else Failure(failure_class, False, "E401")
    return replace(event(kind, error=error), failure=failure)


def run(*events):
    connection = Connection(connection_id="conn-1")
    outcomes = [connection.accept(e, NOW, Policy()) for e in events]
    assert all(o is Outcome.APPLIED for o in outcomes), outcomes
    return connection, project(None, connection.applied)


def authorized_then_loading():
    return [
        event(E.AUTHORIZATION_STARTED),
        event(E.AUTHORIZATION_SUCCEEDED),
        event(E.LOADING_STARTED),
    ]


def test_a_loading_failure_of_class_credentials_makes_the_credentials_error():
    connection, view = run(
        *authorized_then_loading(), failed(E.LOADING_FAILED, FailureClass.CREDENTIALS, "401")
    )
    assert connection.holds_credentials is False
    assert (view.credentials_valid, view.credentials_error, view.can_extract) == (
        False,
        "401",
        False,
    )


@pytest.mark.parametrize("other", [FailureClass.RATE_LIMIT, FailureClass.SOURCE_UNAVAILABLE, None])
def test_a_loading_failure_of_another_class_leaves_the_credentials_active(other):
    connection, view = run(*authorized_then_loading(), failed(E.LOADING_FAILED, other))
    assert connection.holds_credentials is True and view.credentials_valid is True


def test_a_reauthorization_refused_for_its_credentials_is_no_mere_abandoned_attempt():
    first = [event(E.AUTHORIZATION_STARTED), event(E.AUTHORIZATION_SUCCEEDED)]
    again = event(E.AUTHORIZATION_STARTED, session_id="s-2")
    _, kept = run(
        *first,
        again,
        replace(failed(E.AUTHORIZATION_FAILED, FailureClass.PERMISSION), session_id="s-2"),
    )
    assert kept.credentials_valid is True and kept.reauthorization_error == "refused"
    _, lost = run(
        *first,
        again,
        replace(failed(E.AUTHORIZATION_FAILED, FailureClass.CREDENTIALS), session_id="s-2"),
    )
    assert lost.credentials_valid is False and lost.credentials_error == "refused"


def test_error_text_alone_reads_as_unknown_and_no_error_as_no_failure():
    connection, view = run(*authorized_then_loading(), failed(E.LOADING_FAILED, None))
    causes = [t.failure_class for t in connection.transitions]
    assert causes == [None, None, None, FailureClass.UNKNOWN]
    assert view.status_failure_class == "unknown"


def test_the_failure_travels_on_the_wire_in_and_out():
    before = authorized_then_loading()
    sent = failed(E.LOADING_FAILED, FailureClass.RATE_LIMIT)
    messages = EventMessages()
    assert messages.decode(messages.encode(sent)).failure == sent.failure
    connection, _ = run(*before, sent)
    record = StatusChangeMessages().decode(
        StatusChangeMessages().encode(connection.transitions[-1])
    )
    assert (record["failure_class"], record["failure_retryable"], record["failure_code"]) == (
        "rate_limit",
        False,
        "E401",
    )
    loading = StatusChangeMessages().decode(
        StatusChangeMessages().encode(connection.transitions[2])
    )
    assert (loading["failure_class"], loading["failure_retryable"]) == (None, None)


def test_failures_are_counted_per_app_and_class():
    connection, _ = run(*authorized_then_loading(), failed(E.LOADING_FAILED, FailureClass.DATA))
    metrics = Metrics()
    metrics.record_result(BatchResult(transitions=list(connection.transitions)))
    counted = metrics.registry.get_sample_value(
        "syncstatus_failures_total", {"app": "facebook_ads", "class": "data"}
    )
    assert counted == 1.0
