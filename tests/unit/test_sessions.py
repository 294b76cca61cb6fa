"""Session-true statuses (issue 10): late, replayed and clock-skewed events never rewrite a
connection's story. Each reproduction of the issue, on the pure aggregate."""

from __future__ import annotations

import uuid
from datetime import timedelta

from syncstatus.statemachine.connection import Connection, Outcome, Policy, RefusalReason
from syncstatus.statemachine.events import Account, EventType, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import project
from tests.helpers.factories import T0, event, happy_session

E = EventType
POLICY = Policy(park_window=timedelta(hours=1), clock_skew=timedelta(minutes=5))
NOW = T0 + timedelta(hours=2)


def run(events, connection=None, now=NOW):
    connection = connection or Connection("conn-1")
    return connection, [connection.accept(e, now, POLICY) for e in events]


def reason(connection) -> RefusalReason:
    return connection.refusals[-1].reason


def synced_then_loading_again():
    """s-1 synced; s-2, a new sync, at 2 Loading."""
    connection, _ = run(happy_session(session_id="s-1"))
    run([event(E.LOADING_STARTED, session_id="s-2")], connection)
    assert (connection.status, connection.session_id) == (Status.LOADING, "s-2")
    return connection


def test_a_late_event_of_a_finished_session_leaves_the_running_one_alone():
    connection = synced_then_loading_again()
    _, outcomes = run([event(E.LOADING_FAILED, session_id="s-1", error="late")], connection)
    assert outcomes == [Outcome.REFUSED]
    assert reason(connection) is RefusalReason.SUPERSEDED_SESSION
    assert (connection.status, connection.session_id) == (Status.LOADING, "s-2")


def test_substages_of_another_session_do_not_count():
    connection = synced_then_loading_again()
    s2 = [E.LOADING_COMPLETED, E.STRUCTURING_STARTED, E.STRUCTURING_COMPLETED]
    run([event(k, session_id="s-2") for k in [*s2, E.PROCESSING_STARTED]], connection)
    four = list(Substage)[:4]
    run(
        [event(E.PROCESSING_SUBSTAGE_COMPLETED, session_id="s-2", substage=s) for s in four],
        connection,
    )
    late = event(
        E.PROCESSING_SUBSTAGE_COMPLETED,
        session_id="s-1",
        substage=Substage("HISTORICAL_DATA_CLEANING"),
    )
    _, outcomes = run([late, event(E.PROCESSING_COMPLETED, session_id="s-2")], connection)
    assert outcomes == [Outcome.REFUSED, Outcome.PARKED]
    assert connection.status is Status.PROCESSING
    assert connection.completed_substages == frozenset(four)


def test_an_old_authorization_replayed_with_a_new_id_is_superseded():
    connection, _ = run(happy_session(session_id="s-1"))
    month_ago = T0 - timedelta(days=30)
    known = event(E.AUTHORIZATION_STARTED, session_id="s-1", at=month_ago)
    older = event(E.AUTHORIZATION_STARTED, session_id="s-0", at=month_ago)
    _, outcomes = run([known, older], connection)
    assert outcomes == [Outcome.REFUSED, Outcome.REFUSED]
    assert [r.reason for r in connection.refusals] == [
        RefusalReason.STALE,  # the session's own producer reported later events since
        RefusalReason.SUPERSEDED_SESSION,
    ]
    assert connection.status is Status.SYNCED


def test_a_disconnect_of_an_earlier_session_does_not_end_the_reconnected_one():
    connection, _ = run(happy_session(session_id="s-1"))
    run([event(E.AUTHORIZATION_STARTED, session_id="s-2", producer="auth")], connection)
    day_old = T0 - timedelta(days=1)
    of_s1 = event(E.DISCONNECTED, session_id="s-1", at=day_old, producer="admin")
    unnamed = event(E.DISCONNECTED, session_id="admin-1", at=day_old, producer="admin")
    _, outcomes = run([of_s1, unnamed], connection)
    assert outcomes == [Outcome.REFUSED, Outcome.REFUSED]
    assert {r.reason for r in connection.refusals} == {RefusalReason.SUPERSEDED_SESSION}
    assert connection.status is Status.AUTHORIZATION


def test_a_disconnect_after_the_session_opened_applies_whatever_session_it_names():
    connection, _ = run([event(E.AUTHORIZATION_STARTED, producer="auth")])
    later = connection.session_opened_at + timedelta(minutes=11)
    run([event(E.DISCONNECTED, session_id="admin-1", at=later, producer="admin")], connection)
    assert connection.status is Status.DISCONNECTED
    assert connection.transitions[-1].session_id == "s-1"


def test_one_producers_fast_clock_does_not_decide_anothers_events():
    fast = timedelta(minutes=10)
    auth = [
        event(E.AUTHORIZATION_STARTED, at=T0 + fast, producer="auth"),
        event(E.AUTHORIZATION_SUCCEEDED, at=T0 + fast + timedelta(seconds=1), producer="auth"),
    ]
    pipeline = [
        event(k, at=T0 + timedelta(seconds=i), producer="pipeline")
        for i, k in enumerate(
            [E.LOADING_STARTED, E.LOADING_COMPLETED, E.STRUCTURING_STARTED], start=2
        )
    ]
    connection, outcomes = run([auth[0], *pipeline, auth[1]])
    assert outcomes == [Outcome.APPLIED, *[Outcome.PARKED] * 3, Outcome.APPLIED]
    assert connection.status is Status.STRUCTURING
    assert connection.refusals == []


def test_an_abandoned_reconnect_keeps_working_credentials_and_the_connection_syncing():
    active = (Account("a-1", "Main", "active"),)
    connection, _ = run(
        [*happy_session(session_id="s-1"), event(E.ACCOUNTS_SYNCED, accounts=active)]
    )
    view = project(None, connection.applied)
    reconnect_at = NOW + timedelta(minutes=1)
    connection.applied.clear()
    connection.accept(event(E.AUTHORIZATION_STARTED, session_id="s-2"), reconnect_at, POLICY)
    timeout_at = reconnect_at + POLICY.authorization_timeout
    connection.accept(connection.due_timeout(timeout_at, POLICY), timeout_at, POLICY)
    view = project(view, connection.applied)
    assert connection.status is Status.AUTHORIZATION_TIMEDOUT
    assert (view.credentials_label, view.can_extract) == ("Active", True)
    assert view.reauthorization_failed_at == timeout_at
    resync = event(E.LOADING_STARTED, session_id="s-3")
    assert connection.accept(resync, timeout_at, POLICY) is Outcome.APPLIED
    assert connection.status is Status.LOADING


def test_a_failed_first_authorization_makes_the_credentials_error():
    connection, _ = run([event(E.AUTHORIZATION_STARTED), event(E.AUTHORIZATION_FAILED)])
    view = project(None, connection.applied)
    assert (view.credentials_label, view.reauthorization_failed_at) == ("Error", None)
    _, outcomes = run([event(E.LOADING_STARTED, session_id="s-2")], connection)
    assert outcomes == [Outcome.PARKED]


def test_the_view_does_not_depend_on_how_events_were_batched():
    accounts = (Account("a-1", "Main", "active"), Account("a-2", "Old", "disabled"))
    events = [*happy_session()[:-1], event(E.ACCOUNTS_SYNCED, accounts=accounts)]
    events.append(event(E.SYNC_COMPLETED))
    one_batch, _ = run(events)
    together = project(None, one_batch.applied)
    apart = None
    connection = Connection("conn-1")
    for e in events:
        connection.applied.clear()
        connection.accept(e, NOW, POLICY)
        apart = project(apart, connection.applied)
    assert together == apart
    assert together.accounts["a-1"].updated_at == events[-1].occurred_at
    assert together.accounts["a-2"].updated_at is None


def test_a_deleted_connection_takes_no_more_events():
    connection, _ = run(happy_session())
    parked = event(E.LOADING_COMPLETED, session_id="s-2")
    run([parked], connection)
    command = uuid.uuid4()
    assert connection.accept(connection.deletion(command, NOW), NOW, POLICY) is Outcome.APPLIED
    last = connection.transitions[-1]
    assert (last.to_status, last.event_type, last.event_id) == (
        Status.DISCONNECTED,
        E.CONNECTION_DELETED,
        command,
    )
    _, outcomes = run([event(E.AUTHORIZATION_STARTED, session_id="s-3")], connection)
    assert outcomes == [Outcome.REFUSED]
    assert [r.reason for r in connection.refusals] == [RefusalReason.CONNECTION_DELETED] * 2
    assert connection.parked == []


def test_an_event_of_a_session_not_seen_yet_waits_for_its_opener():
    connection, _ = run(happy_session(session_id="s-1"))
    early = event(E.LOADING_COMPLETED, session_id="s-2")
    opener = event(E.LOADING_STARTED, session_id="s-2", at=early.occurred_at - timedelta(seconds=1))
    _, outcomes = run([early, opener], connection)
    assert outcomes == [Outcome.PARKED, Outcome.APPLIED]
    assert (connection.status, connection.session_id) == (Status.LOADED, "s-2")


def test_a_retry_with_a_new_id_is_stale_but_a_real_retry_applies():
    connection, _ = run(happy_session()[:3])  # Loading
    started = connection.transitions[-1]
    copy = event(E.LOADING_STARTED, at=started.occurred_at)
    failed, retried = event(E.LOADING_FAILED), event(E.LOADING_STARTED)
    _, outcomes = run([failed, copy, retried], connection)
    assert outcomes == [Outcome.APPLIED, Outcome.REFUSED, Outcome.APPLIED]
    assert reason(connection) is RefusalReason.STALE
    assert connection.status is Status.LOADING
