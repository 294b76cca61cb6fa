"""The connection aggregate: applying, parking, refusing, timeouts, sequences."""

from __future__ import annotations

import copy
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncstatus.statemachine.connection import (
    Connection,
    Outcome,
    Policy,
    RefusalReason,
)
from syncstatus.statemachine.events import EventType, Substage
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS
from tests.helpers.examples import examples
from tests.helpers.factories import T0, event, happy_session

E = EventType
POLICY = Policy(deduplication_apps=frozenset({"plaid"}), park_window=timedelta(seconds=60))
NOW = T0 + timedelta(hours=1)


def run(events, connection=None, now=NOW, policy=POLICY):
    connection = connection or Connection("conn-1")
    outcomes = [connection.accept(e, now, policy) for e in events]
    return connection, outcomes


def test_a_whole_session_reaches_synced_with_gapless_sequences():
    connection, outcomes = run(happy_session())
    assert set(outcomes) == {Outcome.APPLIED}
    assert connection.status is Status.SYNCED
    assert [t.sequence for t in connection.transitions] == list(range(1, 15))
    assert connection.transitions[0].from_status is None
    assert connection.version == 14


def test_substage_completions_keep_the_status_and_record_the_substage():
    connection, _ = run(happy_session()[:8])
    last = connection.transitions[-1]
    assert (last.from_status, last.to_status, last.substage) == (
        Status.PROCESSING,
        Status.PROCESSING,
        Substage.MONITORING,
    )


def test_a_new_processing_run_needs_all_five_substages_again():
    events = happy_session()[:12]  # through all five substages, not completed
    connection, _ = run(events)
    failed = event(E.PROCESSING_FAILED, substage=Substage.INSIGHTS, error="boom")
    restarted = event(E.PROCESSING_STARTED)
    completed = event(E.PROCESSING_COMPLETED)
    _, outcomes = run([failed, restarted, completed], connection)
    assert outcomes[:2] == [Outcome.APPLIED, Outcome.APPLIED]
    assert outcomes[2] is Outcome.PARKED
    assert connection.transitions[-2].substage is Substage.INSIGHTS
    assert connection.status is Status.PROCESSING


def test_an_event_that_arrives_before_its_predecessor_is_parked_then_released():
    started, succeeded, loading = (
        event(k) for k in (E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED)
    )
    connection, outcomes = run([started, loading, succeeded])
    assert outcomes == [Outcome.APPLIED, Outcome.PARKED, Outcome.APPLIED]
    assert connection.status is Status.LOADING
    assert [t.event_type for t in connection.transitions] == [
        E.AUTHORIZATION_STARTED,
        E.AUTHORIZATION_SUCCEEDED,
        E.LOADING_STARTED,
    ]
    assert connection.parked == [] and connection.newly_parked == []


def test_events_of_a_connection_never_seen_wait_for_its_authorization():
    succeeded = event(E.AUTHORIZATION_SUCCEEDED)
    connection, outcomes = run([succeeded])
    assert outcomes == [Outcome.PARKED]
    assert connection.status is None


def test_an_older_event_that_does_not_apply_is_refused_as_stale():
    connection, _ = run(happy_session()[:4])
    late = event(E.AUTHORIZATION_SUCCEEDED, at=T0)
    _, outcomes = run([late], connection)
    assert outcomes == [Outcome.REFUSED]
    assert connection.refusals[0].reason is RefusalReason.STALE
    assert connection.refusals[0].from_status is Status.LOADED


def test_a_newer_event_of_the_session_that_lies_behind_is_an_illegal_transition():
    connection, _ = run(happy_session())
    again = event(E.LOADING_COMPLETED)
    _, outcomes = run([again], connection)
    assert outcomes == [Outcome.REFUSED]
    refusal = connection.refusals[0]
    assert refusal.reason is RefusalReason.ILLEGAL_TRANSITION
    assert "LOADING_COMPLETED is not allowed from 19 Synced" in refusal.detail


def test_a_retry_through_the_aggregator_that_arrives_out_of_order_waits_for_its_start():
    connection, _ = run(happy_session()[:3] + [event(E.LOADING_FAILED)])
    assert connection.status is Status.LOADING_ERROR
    pending, received = event(E.WEBHOOK_PENDING), event(E.WEBHOOK_RECEIVED)
    _, outcomes = run([received, pending], connection)
    assert outcomes == [Outcome.PARKED, Outcome.APPLIED]
    assert connection.status is Status.LOADING
    assert connection.parked == [] and connection.refusals == []


def test_a_retry_parked_at_loading_does_not_follow_a_later_failure():
    connection, _ = run(happy_session()[:3])  # Loading
    retry, failed = event(E.LOADING_STARTED), event(E.LOADING_FAILED)  # retry happened first
    _, outcomes = run([retry, failed], connection)
    assert outcomes == [Outcome.PARKED, Outcome.APPLIED]
    assert connection.status is Status.LOADING_ERROR
    assert [r.reason for r in connection.refusals] == [RefusalReason.STALE]
    assert connection.parked == []


def test_a_retry_that_overtook_its_failure_follows_it():
    connection, _ = run(happy_session()[:3])  # Loading
    failed, retry = event(E.LOADING_FAILED), event(E.LOADING_STARTED)  # failure happened first
    _, outcomes = run([retry, failed], connection)
    assert outcomes == [Outcome.PARKED, Outcome.APPLIED]
    assert connection.status is Status.LOADING
    assert connection.refusals == [] and connection.parked == []


def test_a_newer_event_the_session_can_no_longer_reach_is_refused_at_once():
    connection, _ = run(happy_session()[:8])  # Processing
    _, outcomes = run([event(E.LOADING_COMPLETED)], connection)
    assert outcomes == [Outcome.REFUSED]
    assert connection.refusals[0].reason is RefusalReason.ILLEGAL_TRANSITION


def test_an_event_stamped_the_same_millisecond_as_the_last_transition_is_not_stale():
    connection, _ = run(happy_session()[:3])  # Loading
    same_time = event(E.STRUCTURING_STARTED, at=connection.transitions[-1].occurred_at)
    _, outcomes = run([same_time], connection)
    assert outcomes == [Outcome.PARKED]


def test_a_parked_event_that_a_later_transition_overtook_is_refused():
    connection, _ = run(happy_session()[:3])  # Loading
    completed = event(E.STRUCTURING_STARTED)
    failed = event(E.LOADING_FAILED)
    connection.accept(completed, NOW, POLICY)
    connection.accept(failed, NOW, POLICY)  # applies: Loading Error
    assert connection.status is Status.LOADING_ERROR
    assert [r.reason for r in connection.refusals] == [RefusalReason.STALE]
    assert connection.parked == []


def test_a_parked_event_is_refused_once_the_window_passes():
    connection, _ = run([event(E.AUTHORIZATION_STARTED), event(E.LOADING_COMPLETED)])
    assert len(connection.parked) == 1
    connection.expire_parked(NOW + timedelta(seconds=61), POLICY)
    assert connection.parked == []
    assert connection.refusals[0].reason is RefusalReason.PARKED_TOO_LONG


def test_deduplication_apps_cannot_skip_deduplication():
    connection, _ = run(happy_session(app="plaid")[:4])
    later = connection.transitions[-1].occurred_at + timedelta(seconds=10)
    structuring = event(E.STRUCTURING_STARTED, app="plaid", at=later)
    _, outcomes = run([structuring], connection)
    assert outcomes == [Outcome.PARKED]
    dedup = event(E.DEDUPLICATION_STARTED, app="plaid", at=later - timedelta(seconds=5))
    _, outcomes = run([dedup], connection)
    assert outcomes == [Outcome.APPLIED]
    assert connection.status is Status.STRUCTURING  # the parked event followed


def test_deduplication_of_an_app_that_does_not_deduplicate_is_refused_at_once():
    connection, _ = run(happy_session()[:4])  # facebook_ads, Loaded
    _, outcomes = run([event(E.DEDUPLICATION_STARTED)], connection)
    assert outcomes == [Outcome.REFUSED]
    assert connection.refusals[0].reason is RefusalReason.ILLEGAL_TRANSITION
    assert connection.parked == []


def test_a_deduplication_app_waits_for_its_deduplication_before_structuring():
    connection, _ = run(happy_session(app="plaid")[:4])  # Loaded
    structured = event(E.STRUCTURING_COMPLETED, app="plaid")
    _, outcomes = run([structured], connection)
    assert outcomes == [Outcome.PARKED]


def test_authorization_times_out_on_the_service_clock():
    connection, _ = run([event(E.AUTHORIZATION_STARTED)])
    assert connection.due_timeout(NOW + timedelta(minutes=14), POLICY) is None
    timeout = connection.due_timeout(NOW + timedelta(minutes=15), POLICY)
    assert timeout.type is E.AUTHORIZATION_TIMED_OUT
    assert connection.accept(timeout, NOW + timedelta(minutes=15), POLICY) is Outcome.APPLIED
    assert connection.status is Status.AUTHORIZATION_TIMEDOUT


def test_stage_timeouts_are_per_status_and_restart_only_the_stage_that_timed_out():
    policy = Policy(
        stage_timeout=timedelta(hours=1), stage_timeouts={Status.STRUCTURED: timedelta(minutes=5)}
    )
    connection, _ = run(happy_session()[:6], policy=policy)
    assert connection.status is Status.STRUCTURED
    later = NOW + timedelta(minutes=5)
    timeout = connection.due_timeout(later, policy)
    assert timeout.type is E.STAGE_TIMED_OUT
    connection.accept(timeout, later, policy)
    assert (connection.status, connection.timed_out_from) == (Status.TIMED_OUT, Status.STRUCTURED)
    assert connection.accept(event(E.PROCESSING_STARTED), later, policy) is Outcome.APPLIED


def test_the_timeout_event_id_is_stable_for_one_version():
    connection, _ = run([event(E.AUTHORIZATION_STARTED)])
    late = NOW + timedelta(hours=2)
    assert (
        connection.due_timeout(late, POLICY).event_id
        == connection.due_timeout(late + timedelta(hours=1), POLICY).event_id
    )


def test_statuses_without_a_timeout_never_time_out():
    connection, _ = run(happy_session())
    assert connection.due_timeout(NOW + timedelta(days=365), POLICY) is None


# Property: whatever arrives, the aggregate only ever makes transitions of the table, its
# history replays to its current status, and its sequence numbers have no gaps.
event_kinds = st.sampled_from([k for k in EventType if k is not E.STAGE_TIMED_OUT])


@st.composite
def streams(draw):
    n = draw(st.integers(min_value=1, max_value=60))
    out = []
    for _ in range(n):
        kind = draw(event_kinds)
        substage = (
            draw(st.sampled_from(list(Substage)))
            if kind is (E.PROCESSING_SUBSTAGE_COMPLETED)
            else None
        )
        session = draw(st.sampled_from(["s-1", "s-2"]))
        app = draw(st.sampled_from(["plaid", "facebook_ads"]))
        accounts = () if kind is E.ACCOUNTS_SYNCED else None
        out.append(event(kind, session_id=session, app=app, substage=substage, accounts=accounts))
    draw(st.randoms()).shuffle(out)
    return out


@settings(max_examples=examples(300), deadline=None)
@given(streams(), st.integers(min_value=0, max_value=120))
def test_random_streams_only_make_transitions_of_the_table(events, seconds_later):
    connection = Connection("conn-1")
    for i, e in enumerate(events):
        connection.accept(e, NOW + timedelta(seconds=i * seconds_later), POLICY)
    status = None
    rows = {(e, source, route.target) for e, source, route in TRANSITIONS.rows()}
    assert all(a.event.type.changes_status is False for a in connection.activities)
    for expected_sequence, t in enumerate(connection.transitions, start=1):
        assert t.sequence == expected_sequence
        assert t.from_status == status
        assert (t.event_type, t.from_status, t.to_status) in rows
        status = t.to_status
    assert status == connection.status
    decided = (
        len(connection.transitions)
        + len(connection.activities)
        + len(connection.refusals)
        + len(connection.parked)
    )
    assert decided == len(events)


def test_account_events_change_no_status_and_wait_for_a_known_connection():
    accounts = event(E.ACCOUNTS_SYNCED, accounts=())
    connection, outcomes = run([accounts])
    assert outcomes == [Outcome.PARKED]
    run([event(E.AUTHORIZATION_STARTED)], connection)
    assert connection.status is Status.AUTHORIZATION
    assert [a.event for a in connection.activities] == [accounts]
    assert connection.version == 1


@settings(max_examples=examples(80), deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(["plaid", "facebook_ads"]))
def test_whatever_a_session_does_next_was_judged_able_to_wait(rng, app):
    """Completeness of parking: walk the aggregate through events that apply, and every later
    transition of the session must have been one an earlier status could still reach."""
    connection = Connection("conn-1")
    connection.accept(event(E.AUTHORIZATION_STARTED, app=app), NOW, POLICY)
    kinds = [k for k in EventType if k.changes_status and k is not E.STAGE_TIMED_OUT]
    for _ in range(30):
        for kind in rng.sample(kinds, len(kinds)):
            trial = copy.deepcopy(connection)
            candidate = event(kind, app=app, substage=rng.choice(list(Substage)))
            if trial.accept(candidate, NOW, POLICY) is Outcome.APPLIED:
                connection = trial
                break
    transitions = connection.transitions
    for i, earlier in enumerate(transitions):
        for later in transitions[i + 1 :]:
            if _leaves_the_session(later):
                break
            assert TRANSITIONS.may_still_apply(
                later.event_type, earlier.to_status, app in POLICY.deduplication_apps
            ), (earlier.to_status, later.event_type, later.from_status)


def _leaves_the_session(t) -> bool:
    """A step the parking rule does not wait across: out of a finished session, or a new
    authorization begun outside the authorization stage."""
    over = t.from_status.ends_session and not t.from_status.is_error
    restarted = t.to_status is Status.AUTHORIZATION and t.from_status.stage.name != "AUTHORIZATION"
    return over or restarted
