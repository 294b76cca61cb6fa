"""The two card statuses (seed 004): the source data sync and the plan data refresh, derived
from the transitions the aggregate decides."""

from __future__ import annotations

from datetime import timedelta

from syncstatus.statemachine.connection import Connection, Policy
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.runs import Part, RunOutcome, RunState
from syncstatus.statemachine.statuses import Stage, Status
from syncstatus.statemachine.view import project
from tests.helpers.factories import T0, event, happy_session

E = EventType
NOW = T0 + timedelta(hours=1)


def drive(events, connection=None, view=None):
    """The connection and its view after the events, each projected as the engine does."""
    connection = connection or Connection("conn-1")
    for e in events:
        connection.accept(e, NOW, Policy())
    view = project(view, list(connection.transitions))
    connection.transitions.clear()
    return connection, view


def at(events, kind):
    return next(e.occurred_at for e in events if e.type is kind)


def until(kind, events=None):
    """A happy session (or `events`) up to and including the first event of `kind`."""
    events = events or happy_session()
    return events[: [e.type for e in events].index(kind) + 1]


def time_out(connection, view):
    """The service's clock times the status out, as the engine's sweep does."""
    late = NOW + timedelta(days=1)
    timeout = connection.due_timeout(late, Policy())
    connection.accept(timeout, late, Policy())
    view = project(view, list(connection.transitions))
    connection.transitions.clear()
    return timeout, view


def test_the_parts_are_the_machine_stages_timed_out_going_with_where_it_came_from():
    sync = {s for s in Status if Part.SOURCE_SYNC.holds(s)}
    refresh = {s for s in Status if Part.DATA_REFRESH.holds(s)}
    assert sorted(sync) == [2, 11, 12, 13, 14, 15, 21, 22, 25]
    assert sorted(refresh) == [16, 17, 18]
    assert {s for s in Status if Part.SOURCE_SYNC.is_forwards(s)} == {16, 18, 19}
    assert {s for s in Status if Part.DATA_REFRESH.is_forwards(s)} == {19}
    assert max(Part.SOURCE_SYNC.value) < Stage.PROCESSING


def test_before_any_run_both_are_null():
    _, view = drive(until(E.AUTHORIZATION_SUCCEEDED))
    assert view.source_sync == RunState() and view.data_refresh == RunState()


def test_a_happy_session_starts_and_succeeds_each_part_in_turn():
    events = happy_session()
    _, view = drive(until(E.LOADING_STARTED, events))
    assert view.source_sync == RunState(RunOutcome.IN_PROGRESS, at(events, E.LOADING_STARTED))
    assert view.data_refresh.state is None

    _, view = drive(until(E.PROCESSING_STARTED, events))
    assert view.source_sync == RunState(
        RunOutcome.SUCCESS,
        at(events, E.LOADING_STARTED),
        succeeded_at=at(events, E.PROCESSING_STARTED),
    )
    assert view.data_refresh == RunState(RunOutcome.IN_PROGRESS, at(events, E.PROCESSING_STARTED))

    _, view = drive(until(E.PROCESSING_COMPLETED, events))
    assert view.data_refresh.state is RunOutcome.IN_PROGRESS, "18 Processed is not the end"

    _, view = drive(events)
    assert view.status is Status.SYNCED
    assert view.data_refresh == RunState(
        RunOutcome.SUCCESS,
        at(events, E.PROCESSING_STARTED),
        succeeded_at=at(events, E.SYNC_COMPLETED),
    )
    assert view.status_error is None


def test_a_loading_error_fails_the_sync_with_its_error_and_a_retry_starts_it_again():
    connection, view = drive(until(E.LOADING_STARTED))
    failed = event(E.LOADING_FAILED, error="API quota exceeded")
    connection, view = drive([failed], connection, view)
    assert view.source_sync.state is RunOutcome.ERROR
    assert (view.source_sync.failed_at, view.source_sync.error) == (
        failed.occurred_at,
        "API quota exceeded",
    )
    assert view.status_error == "API quota exceeded"
    assert view.data_refresh.state is None

    retried = event(E.LOADING_STARTED)
    _, view = drive([retried], connection, view)
    assert view.source_sync.state is RunOutcome.IN_PROGRESS
    assert view.source_sync.started_at == retried.occurred_at
    assert view.source_sync.error == "API quota exceeded", "the last failure stays readable"
    assert view.status_error is None, "only the current error status has a reason"


def test_timing_out_from_structuring_fails_the_sync_and_from_processing_the_refresh():
    connection, view = drive(until(E.STRUCTURING_STARTED))
    timeout, view = time_out(connection, view)
    assert (view.status, view.source_sync.state) == (Status.TIMED_OUT, RunOutcome.ERROR)
    assert view.source_sync.error == timeout.error == view.status_error
    assert view.data_refresh.state is None

    connection, view = drive(until(E.PROCESSING_STARTED))
    timeout, view = time_out(connection, view)
    assert view.source_sync.state is RunOutcome.SUCCESS
    assert (view.data_refresh.state, view.data_refresh.failed_at) == (
        RunOutcome.ERROR,
        timeout.occurred_at,
    )


def test_a_new_session_restarts_the_sync_and_keeps_the_last_refresh():
    connection, view = drive(happy_session())
    first_refresh = view.data_refresh
    again = event(E.LOADING_STARTED, session_id="s-2")
    _, view = drive([again], connection, view)
    assert view.source_sync.state is RunOutcome.IN_PROGRESS
    assert view.source_sync.started_at == again.occurred_at
    assert view.data_refresh == first_refresh


def test_the_refresh_succeeds_only_at_synced():
    connection, view = drive(until(E.PROCESSING_COMPLETED))
    assert view.status is Status.PROCESSED
    assert view.data_refresh.state is RunOutcome.IN_PROGRESS
    assert view.data_refresh.succeeded_at is None


def test_a_run_cut_off_by_a_disconnection_is_shown_failed_not_running():
    connection, view = drive(until(E.LOADING_STARTED))
    gone = event(E.DISCONNECTED)
    _, view = drive([gone], connection, view)
    assert (view.source_sync.state, view.source_sync.error) == (
        RunOutcome.ERROR,
        "Interrupted: Disconnected",
    )
