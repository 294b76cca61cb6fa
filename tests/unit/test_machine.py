"""The machine against the issue's transition table, and the derived table against the library."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statemachine.exceptions import TransitionNotAllowed

from syncstatus.statemachine.events import ALL_SUBSTAGES, EventFamily, EventType, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.statemachine.statuses import Stage, Status
from syncstatus.statemachine.table import TRANSITIONS

E = EventType
ALL = frozenset(Status)
PLAIN = GuardContext()

# The specification (issue 2), written independently of the machine: event -> (sources, target).
# None stands for a new connection.
SPEC: dict[EventType, tuple[frozenset, Status]] = {
    E.AUTHORIZATION_STARTED: (ALL | {None}, Status.AUTHORIZATION),
    E.AUTHORIZATION_SUCCEEDED: (frozenset({6}), Status.AUTHORIZED),
    E.AUTHORIZATION_FAILED: (frozenset({6}), Status.ERROR_IN_AUTHORIZATION),
    E.AUTHORIZATION_TIMED_OUT: (frozenset({6}), Status.AUTHORIZATION_TIMEDOUT),
    E.DEAUTHORIZED: (ALL - {Status.DISCONNECTED}, Status.DEAUTHORIZED),
    E.DISCONNECTED: (ALL, Status.DISCONNECTED),
    E.WEBHOOK_PENDING: (frozenset({7, 9, 11, 19, 20, 23}), Status.WAITING_FOR_WEBHOOK),
    E.WEBHOOK_RECEIVED: (frozenset({25}), Status.LOADING),
    E.WEBHOOK_FAILED: (frozenset({25}), Status.LOADING_ERROR),
    E.LOADING_STARTED: (frozenset({7, 9, 11, 19, 20, 23}), Status.LOADING),
    E.LOADING_COMPLETED: (frozenset({2}), Status.LOADED),
    E.LOADING_FAILED: (frozenset({2}), Status.LOADING_ERROR),
    E.DEDUPLICATION_STARTED: (frozenset({12, 22, 23}), Status.DEDUPLICATION),
    E.DEDUPLICATION_FAILED: (frozenset({21}), Status.DEDUPLICATION_ERROR),
    E.STRUCTURING_STARTED: (frozenset({12, 21, 14, 23}), Status.STRUCTURING),
    E.STRUCTURING_COMPLETED: (frozenset({13}), Status.STRUCTURED),
    E.STRUCTURING_FAILED: (frozenset({13}), Status.STRUCTURING_ERROR),
    E.PROCESSING_STARTED: (frozenset({15, 17, 23}), Status.PROCESSING),
    E.PROCESSING_SUBSTAGE_COMPLETED: (frozenset({16}), Status.PROCESSING),
    E.PROCESSING_FAILED: (frozenset({16}), Status.PROCESSING_ERROR),
    E.PROCESSING_COMPLETED: (frozenset({16}), Status.PROCESSED),
    E.SYNC_COMPLETED: (frozenset({18}), Status.SYNCED),
    E.STAGE_TIMED_OUT: (frozenset({2, 9, 12, 13, 15, 16, 18, 21, 25}), Status.TIMED_OUT),
    # Issue 10: a Delete closes any known connection; a failed or abandoned re-authorization
    # (7, 20) may sync with the credentials that still work.
    E.CONNECTION_DELETED: (ALL, Status.DISCONNECTED),
}

# A context under which every guard of the table passes for its own row.
DEDUP = GuardContext(
    deduplication_required=True,
    timed_out_from=Status.PROCESSING,
    completed_substages=ALL_SUBSTAGES,
    holds_credentials=True,
)
NO_DEDUP = GuardContext(
    deduplication_required=False,
    timed_out_from=Status.PROCESSING,
    completed_substages=ALL_SUBSTAGES,
    holds_credentials=True,
)


def permissive(event: EventType, source: Status | None) -> GuardContext:
    if event is E.DEDUPLICATION_STARTED:
        return DEDUP
    return NO_DEDUP


STATUS_EVENTS = [e for e in EventType if e.changes_status]


def test_the_table_covers_every_event_type_that_changes_status():
    assert set(SPEC) == set(STATUS_EVENTS)
    assert {e for e in EventType if not e.changes_status} == {
        E.ACCOUNTS_SYNC_STARTED,
        E.ACCOUNTS_SYNCED,
        E.ACCOUNTS_SYNC_FAILED,
    }


def test_account_events_are_not_transitions_of_the_machine():
    for event in EventType:
        if not event.changes_status:
            assert TRANSITIONS.sources_of(event) == frozenset()


@pytest.mark.parametrize("event", STATUS_EVENTS, ids=lambda e: e.value)
def test_each_row_of_the_table(event):
    sources, target = SPEC[event]
    for source in [None, *Status]:
        got = TRANSITIONS.decide(source, event, permissive(event, source))
        if source in sources:
            assert got is target, (source, event)
        else:
            assert got is None, (source, event)


def test_statuses_are_exactly_the_documented_codes():
    assert sorted(int(s) for s in Status) == [
        2,
        6,
        7,
        8,
        9,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
        25,
        26,
    ]
    for code in (0, 1, 3, 4, 5, 10, 24, 27):
        with pytest.raises(ValueError):
            Status(code)


def test_each_status_knows_its_stage_and_whether_it_is_an_error():
    assert Status.LOADING.stage is Stage.LOADING
    assert Status.DEDUPLICATION_ERROR.stage is Stage.DEDUPLICATION
    assert Status.SYNCED.stage is Stage.END
    errors = {s for s in Status if s.is_error}
    assert errors == {7, 11, 14, 17, 20, 22, 23}
    assert Status.WAITING_FOR_WEBHOOK.label == "Waiting For Webhook"


def test_deduplication_apps_must_pass_deduplication_before_structuring():
    dedup = GuardContext(deduplication_required=True)
    assert TRANSITIONS.decide(Status.LOADED, E.STRUCTURING_STARTED, dedup) is None
    assert TRANSITIONS.decide(Status.LOADED, E.DEDUPLICATION_STARTED, dedup) is Status.DEDUPLICATION
    assert (
        TRANSITIONS.decide(Status.DEDUPLICATION, E.STRUCTURING_STARTED, dedup) is Status.STRUCTURING
    )


def test_other_apps_do_not_deduplicate():
    assert TRANSITIONS.decide(Status.LOADED, E.DEDUPLICATION_STARTED, PLAIN) is None
    assert TRANSITIONS.decide(Status.LOADED, E.STRUCTURING_STARTED, PLAIN) is Status.STRUCTURING


def test_processing_completes_only_after_all_five_substages():
    four = frozenset(list(Substage)[:4])
    assert (
        TRANSITIONS.decide(
            Status.PROCESSING, E.PROCESSING_COMPLETED, GuardContext(completed_substages=four)
        )
        is None
    )
    assert (
        TRANSITIONS.decide(
            Status.PROCESSING,
            E.PROCESSING_COMPLETED,
            GuardContext(completed_substages=ALL_SUBSTAGES),
        )
        is Status.PROCESSED
    )


@pytest.mark.parametrize(
    ("stuck", "allowed"),
    [
        (Status.AUTHORIZED, {E.LOADING_STARTED, E.WEBHOOK_PENDING}),
        (Status.LOADING, {E.LOADING_STARTED, E.WEBHOOK_PENDING}),
        (Status.LOADED, {E.LOADING_STARTED, E.WEBHOOK_PENDING, E.STRUCTURING_STARTED}),
        (Status.STRUCTURING, {E.LOADING_STARTED, E.WEBHOOK_PENDING, E.STRUCTURING_STARTED}),
        (
            Status.STRUCTURED,
            {E.LOADING_STARTED, E.WEBHOOK_PENDING, E.STRUCTURING_STARTED, E.PROCESSING_STARTED},
        ),
        (
            Status.PROCESSED,
            {E.LOADING_STARTED, E.WEBHOOK_PENDING, E.STRUCTURING_STARTED, E.PROCESSING_STARTED},
        ),
    ],
)
def test_after_a_timeout_only_the_stage_that_timed_out_or_an_earlier_one_restarts(stuck, allowed):
    ctx = GuardContext(timed_out_from=stuck)
    restarts = {
        E.LOADING_STARTED,
        E.WEBHOOK_PENDING,
        E.DEDUPLICATION_STARTED,
        E.STRUCTURING_STARTED,
        E.PROCESSING_STARTED,
    }
    for event in restarts:
        got = TRANSITIONS.decide(Status.TIMED_OUT, event, ctx)
        assert (got is not None) == (event in allowed), event


def test_a_deduplication_app_stuck_at_loaded_restarts_deduplication_not_structuring():
    ctx = GuardContext(deduplication_required=True, timed_out_from=Status.LOADED)
    assert (
        TRANSITIONS.decide(Status.TIMED_OUT, E.DEDUPLICATION_STARTED, ctx) is Status.DEDUPLICATION
    )
    assert TRANSITIONS.decide(Status.TIMED_OUT, E.STRUCTURING_STARTED, ctx) is None


@pytest.mark.parametrize("failed", [Status.ERROR_IN_AUTHORIZATION, Status.AUTHORIZATION_TIMEDOUT])
def test_a_failed_login_syncs_only_with_credentials_that_still_work(failed):
    for event in (E.LOADING_STARTED, E.WEBHOOK_PENDING):
        assert TRANSITIONS.decide(failed, event, GuardContext(holds_credentials=False)) is None
        assert TRANSITIONS.decide(failed, event, GuardContext(holds_credentials=True))


def test_the_library_refuses_with_an_exception_instead_of_ignoring():
    machine = ConnectionStatusMachine(start_value=Status.SYNCED)
    with pytest.raises(TransitionNotAllowed):
        machine.send(E.LOADING_COMPLETED.trigger, ctx=PLAIN)


contexts = st.builds(
    GuardContext,
    deduplication_required=st.booleans(),
    completed_substages=st.frozensets(st.sampled_from(list(Substage))),
    timed_out_from=st.one_of(
        st.none(), st.sampled_from(sorted(TRANSITIONS.sources_of(E.STAGE_TIMED_OUT)))
    ),
    holds_credentials=st.booleans(),
)


@given(
    source=st.sampled_from([None, *Status]),
    event=st.sampled_from(STATUS_EVENTS),
    ctx=contexts,
)
def test_the_derived_table_agrees_with_the_library(source, event, ctx):
    machine = ConnectionStatusMachine(start_value=NEW if source is None else source)
    try:
        machine.send(event.trigger, ctx=ctx)
        expected = Status(next(iter(machine.configuration_values)))
    except TransitionNotAllowed:
        expected = None
    assert TRANSITIONS.decide(source, event, ctx) == expected


@given(
    source=st.sampled_from([None, *Status]),
    event=st.sampled_from(STATUS_EVENTS),
    ctx=contexts,
)
def test_an_unguarded_target_is_what_decide_answers_in_any_context(source, event, ctx):
    target = TRANSITIONS.unguarded_target(source, event)
    assert target is None or target is TRANSITIONS.decide(source, event, ctx)


def test_a_guarded_pair_has_no_unguarded_target():
    assert TRANSITIONS.unguarded_target(Status.LOADED, E.STRUCTURING_STARTED) is None
    assert TRANSITIONS.unguarded_target(Status.LOADING, E.LOADING_COMPLETED) is Status.LOADED


def test_each_status_is_left_by_the_events_of_one_topic_only():
    """Why order within a session can be rebuilt from per-topic order: what moves a session on
    from any status comes from one producer family, so events of two topics never compete for
    the same status. Re-authorizations open a new session; connection-wide and syncstatus's
    own events apply from anywhere."""
    for status in Status:
        families = {
            event.family
            for event in EventType
            if event.changes_status
            and not event.connection_wide
            and event.family is not EventFamily.SERVICE
            and event is not E.AUTHORIZATION_STARTED
            and status in TRANSITIONS.sources_of(event)
        }
        assert len(families) <= 1, (status, families)
