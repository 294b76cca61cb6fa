"""The explanation of a stuck connection, derived from the machine, the policy and its facts."""

from __future__ import annotations

import uuid
from datetime import timedelta

from syncstatus.statemachine.connection import Connection
from syncstatus.statemachine.events import Account, EventFamily, EventType, Substage
from syncstatus.statemachine.explain import Explanation, RefusalLine, explain, last_producers
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import ConnectionView, project
from tests.helpers.factories import T0, event

E = EventType
SESSION_EVENTS = {E.AUTHORIZATION_STARTED, E.DEAUTHORIZED, E.DISCONNECTED}
"""Allowed from every status but Disconnected: listed, but not what a test is about."""


def drive(
    kinds: list[EventType],
    policy: Policy | None = None,
    app: str = "facebook_ads",
    substages: tuple[Substage, ...] = (),
) -> tuple[Connection, ConnectionView]:
    """A connection and its view after `kinds` (each from its own producer family), at T0."""
    policy = policy or Policy()
    connection, view = Connection("c1"), None
    events = [event(k, "c1", app=app, producer=f"{k.family.value}-svc") for k in kinds]
    events += [
        event(E.PROCESSING_SUBSTAGE_COMPLETED, "c1", app=app, substage=s, producer="pipeline-svc")
        for s in substages
    ]
    for e in events:
        connection.accept(e, T0, policy)
        view = project(view, connection.applied)
        connection.applied.clear()
    assert view is not None
    return connection, view


def explained(connection, view, policy=None, now=T0, refusals=()) -> Explanation:
    return explain(connection, view, list(refusals), policy or Policy(), now)


def waiting(explanation: Explanation) -> dict[EventType, Status]:
    return {
        w.event_type: w.target
        for w in explanation.waiting_for
        if w.event_type not in SESSION_EVENTS
    }


def test_authorization_waits_for_its_outcome_and_times_out_by_the_authorization_timeout():
    policy = Policy(authorization_timeout=timedelta(minutes=10))
    connection, view = drive([E.AUTHORIZATION_STARTED], policy)
    result = explained(connection, view, policy, now=T0 + timedelta(minutes=4))
    assert (result.status, result.since) == (Status.AUTHORIZATION, T0)
    assert waiting(result) == {
        E.AUTHORIZATION_SUCCEEDED: Status.AUTHORIZED,
        E.AUTHORIZATION_FAILED: Status.ERROR_IN_AUTHORIZATION,
        E.AUTHORIZATION_TIMED_OUT: Status.AUTHORIZATION_TIMEDOUT,
    }
    assert {w.family for w in result.waiting_for} == {EventFamily.AUTHORIZATION}
    assert {w.last_producer for w in result.waiting_for} == {"authorization-svc"}
    assert result.deadline is not None
    assert result.deadline.event_type is E.AUTHORIZATION_TIMED_OUT
    assert result.deadline.at == T0 + timedelta(minutes=10)
    assert result.deadline.remaining_s == 360
    assert not result.can_extract
    assert result.why_not == [
        "no credentials yet: the connection was never authorized",
        "no active account (Loading accounts)",
    ]


def test_loading_waits_for_the_pipeline_until_its_stage_timeout():
    policy = Policy(stage_timeouts={Status.LOADING: timedelta(hours=2)})
    connection, view = drive(
        [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED], policy
    )
    result = explained(connection, view, policy, now=T0 + timedelta(hours=3))
    assert result.status is Status.LOADING
    assert waiting(result) == {
        E.LOADING_COMPLETED: Status.LOADED,
        E.LOADING_FAILED: Status.LOADING_ERROR,
    }
    pipeline = [w for w in result.waiting_for if w.event_type is E.LOADING_COMPLETED]
    assert (pipeline[0].family, pipeline[0].last_producer) == (EventFamily.PIPELINE, "pipeline-svc")
    assert result.deadline is not None
    assert (result.deadline.event_type, result.deadline.at) == (
        E.STAGE_TIMED_OUT,
        T0 + timedelta(hours=2),
    )
    assert result.deadline.remaining_s == -3600, "overdue: the next sweep applies it"
    assert result.blocked == []


def test_processing_with_four_substages_names_the_one_left_and_the_guard_waiting_for_it():
    start = [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED]
    start += [E.LOADING_COMPLETED, E.STRUCTURING_STARTED, E.STRUCTURING_COMPLETED]
    connection, view = drive([*start, E.PROCESSING_STARTED], substages=tuple(Substage)[:4])
    result = explained(connection, view)
    assert result.status is Status.PROCESSING
    assert waiting(result) == {
        E.PROCESSING_SUBSTAGE_COMPLETED: Status.PROCESSING,
        E.PROCESSING_FAILED: Status.PROCESSING_ERROR,
    }
    assert result.substages_left == [Substage.HISTORICAL_DATA_CLEANING]
    (blocked,) = result.blocked
    assert (blocked.event_type, blocked.target, blocked.guard, blocked.for_good) == (
        E.PROCESSING_COMPLETED,
        Status.PROCESSED,
        "all_substages_completed",
        False,
    )
    assert result.deadline is not None and result.deadline.event_type is E.STAGE_TIMED_OUT


def test_timed_out_has_no_deadline_and_resumes_only_the_stage_it_timed_out_in():
    connection, view = drive([E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED])
    connection.accept(connection.due_timeout(T0 + timedelta(hours=7), Policy()), T0, Policy())
    result = explained(connection, view)
    assert result.status is Status.TIMED_OUT
    assert result.deadline is None
    assert waiting(result) == {
        E.LOADING_STARTED: Status.LOADING,
        E.WEBHOOK_PENDING: Status.WAITING_FOR_WEBHOOK,
    }
    assert {(b.event_type, b.guard) for b in result.blocked} >= {
        (E.STRUCTURING_STARTED, "resumes_structuring"),
        (E.PROCESSING_STARTED, "resumes_processing"),
    }


def test_waiting_for_webhook_lists_the_webhook_family_and_its_timeout():
    connection, view = drive(
        [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.WEBHOOK_PENDING]
    )
    result = explained(connection, view)
    assert result.status is Status.WAITING_FOR_WEBHOOK
    assert waiting(result) == {
        E.WEBHOOK_RECEIVED: Status.LOADING,
        E.WEBHOOK_FAILED: Status.LOADING_ERROR,
    }
    families = {w.event_type: (w.family, w.last_producer) for w in result.waiting_for}
    assert families[E.WEBHOOK_RECEIVED] == (EventFamily.WEBHOOK, None), "no webhook came yet"
    assert result.deadline is not None
    assert result.deadline.at == T0 + Policy().stage_timeout


def test_the_deduplication_guard_follows_the_policy_for_the_app():
    kinds = [E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED]
    kinds.append(E.LOADING_COMPLETED)
    dedup = Policy(deduplication_apps=frozenset({"facebook_ads"}))
    connection, view = drive(kinds, dedup)
    assert waiting(explained(connection, view, dedup)) == {
        E.DEDUPLICATION_STARTED: Status.DEDUPLICATION
    }
    (blocked,) = explained(connection, view, dedup).blocked
    assert (blocked.event_type, blocked.guard, blocked.for_good) == (
        E.STRUCTURING_STARTED,
        "not deduplication_required",
        True,
    )
    connection, view = drive(kinds)
    assert waiting(explained(connection, view)) == {E.STRUCTURING_STARTED: Status.STRUCTURING}
    (blocked,) = explained(connection, view).blocked
    assert (blocked.event_type, blocked.guard) == (
        E.DEDUPLICATION_STARTED,
        "deduplication_required",
    )


def test_parked_events_show_their_age_and_the_window_left_and_refusals_pass_through():
    policy = Policy(park_window=timedelta(seconds=60))
    connection, view = drive([E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED], policy)
    early = event(E.STRUCTURING_STARTED, "c1", producer="pipeline-svc")
    connection.accept(early, T0, policy)
    refused = RefusalLine("illegal_transition", "no", "SYNC_COMPLETED", uuid.uuid4(), T0)
    result = explained(connection, view, policy, T0 + timedelta(seconds=45), [refused])
    (parked,) = result.parked
    assert (parked.event_id, parked.event_type, parked.session_id) == (
        early.event_id,
        E.STRUCTURING_STARTED,
        "s-1",
    )
    assert (parked.parked_at, parked.age_s, parked.window_left_s) == (T0, 45, 15)
    assert result.refusals == [refused]
    late = explained(connection, view, policy, T0 + timedelta(seconds=90))
    assert late.parked[0].window_left_s == 0, "due for refusal at the next sweep"


def test_extraction_needs_valid_credentials_and_an_active_account():
    connection, view = drive([E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED])
    assert explained(connection, view).why_not == ["no active account (No accounts)"]
    listed = event(E.ACCOUNTS_SYNCED, "c1", accounts=(Account("a1", "Main", "active"),))
    connection.accept(listed, T0, Policy())
    view = project(view, connection.applied)
    result = explained(connection, view)
    assert (result.can_extract, result.why_not) == (True, [])


def test_the_last_producer_of_a_family_is_the_latest_in_the_history_else_in_the_marks():
    connection, _ = drive([E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED])
    history = [(E.AUTHORIZATION_STARTED, "auth-a"), (E.AUTHORIZATION_SUCCEEDED, "auth-b")]
    assert last_producers(connection, history) == {EventFamily.AUTHORIZATION: "auth-b"}
    assert last_producers(connection, ()) == {EventFamily.AUTHORIZATION: "authorization-svc"}
