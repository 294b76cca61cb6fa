"""Property: however realistic producers deliver connections whose failures carry failure
classes (or error text alone, or nothing), the engine on the in-memory store ends with the view
an independent oracle predicts from the true story: the class and reason of the current error,
whether the credentials work (a `credentials` failure of an account sync leaves them as they
are), the accounts' state and error, and the card's two statuses (source data sync, plan data
refresh: state, last started, succeeded and failed, and the error of that failure), also after
the sweeper timed the connection out wherever it stopped."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound
from syncstatus.statemachine.connection import TIMEOUT_PRODUCER, Policy
from syncstatus.statemachine.events import EventType, Failure, FailureClass, SessionEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import ConnectionView
from tests.helpers.examples import story_settings
from tests.helpers.factories import event, happy_session
from tests.helpers.failure_stories import FailureStory, failure_story
from tests.helpers.fake_store import FakeStore
from tests.helpers.oracle import (
    CREDENTIALS,
    DATA_REFRESH,
    SOURCE_SYNC,
    Expected,
    Oracle,
    Run,
    expected,
)

E = EventType
TOLERANCE = timedelta(minutes=5)
DEDUP = frozenset({"plaid"})
POLICY = Policy(deduplication_apps=DEDUP, clock_skew=TOLERANCE, park_window=timedelta(days=1))
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SWEEP_AT = NOW + POLICY.stage_timeout + timedelta(minutes=1)
"""Past every status's timeout (the stages' and Authorization's), within the park window."""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def delivered(rng: random.Random, stories: list[FailureStory], cuts: list[int]):
    """The connections' arrivals merged as partitions hold them (each connection's in its
    order), cut into batches."""
    queues = [list(s.arrivals) for s in stories]
    merged = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        merged.append(queue.pop(0))
    bounds = sorted({0, len(merged), *(c % len(merged) for c in cuts)})
    return [merged[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def run_engine(batches, clock: Clock) -> tuple[FakeStore, dict[str, object]]:
    """Every batch in its unit of work, then one sweep once every timeout is due."""
    store = FakeStore()
    engine = StatusEngine(store, POLICY, clock=clock)
    for batch in batches:
        engine.apply_batch([Inbound(e) for e in batch])
    clock.now = SWEEP_AT
    swept = {t.connection_id: t for t in engine.sweep().transitions}
    return store, swept


def predicted(told: FailureStory, swept) -> Expected:
    """The oracle's view after the truth, and after the timeout it says is due (its reason is
    the sweeper's wording, which the oracle does not model)."""
    oracle = Oracle(DEDUP)
    for e in told.truth:
        oracle.apply(e)
    due = oracle.timeout_due()
    timeout = swept.get(told.connection_id)
    assert (timeout and timeout.event_type) == due, (
        f"timeout {timeout and timeout.event_type} from {oracle.result.status}; oracle: {due}"
    )
    if due is not None:
        assert timeout.from_status is oracle.result.status
        oracle.apply(
            SessionEvent(
                event_id=timeout.event_id,
                type=due,
                connection_id=told.connection_id,
                session_id=oracle.result.session_id,
                app=told.app,
                occurred_at=SWEEP_AT,
                producer=TIMEOUT_PRODUCER,
                error=timeout.error,
            )
        )
    return oracle.result


def card(run) -> tuple:
    state = getattr(run.state, "value", run.state)
    return (state, run.started_at, run.succeeded_at, run.failed_at, run.error)


def assert_view_matches(view: ConnectionView, holds: bool | None, want: Expected) -> None:
    trace = "\n".join(
        f"  {a and int(a)} -> {int(b)} by {k.value}" + (f" [{c}]" if c else "")
        for a, b, k, c in want.trace
    )
    where = f"true story:\n{trace}"
    assert view.status is want.status, where
    assert (view.status_failure_class, view.status_error) == (
        want.failure_class,
        want.status_error,
    ), where
    assert view.credentials_valid == want.credentials_valid, where
    assert holds == want.credentials_valid, where
    assert view.reauthorization_failed_at == want.reauthorization_failed_at, where
    assert (view.accounts_state.value, view.accounts_error) == (
        want.accounts_state,
        want.accounts_error,
    ), where
    assert card(view.source_sync) == card(want.source_sync), f"source data sync; {where}"
    assert card(view.data_refresh) == card(want.data_refresh), f"plan data refresh; {where}"


@story_settings(250)
@given(
    st.randoms(use_true_random=False),
    st.integers(1, 3),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_failure_classes_credentials_and_card_statuses_match_the_oracle(rng, count, cuts):
    stories = [failure_story(rng, f"c-{i}", TOLERANCE, DEDUP) for i in range(count)]
    store, swept = run_engine(delivered(rng, stories, cuts), Clock())
    assert not store.parked(), "every event of the truth arrived: nothing may still wait"
    for told in stories:
        want = predicted(told, swept)
        row = store.connection(told.connection_id)
        assert_view_matches(store.tables.views[told.connection_id], row.holds_credentials, want)


def test_the_generator_makes_what_the_property_claims():
    """Guard the guard: failures of every class, credentials ones that land, error text alone,
    timeouts in both parts, revocations and new sessions after a cut-off one, late copies of
    credentials failures that must change nothing, and failed account syncs classed
    `credentials` while the credentials work (which they must leave working)."""
    stories = [failure_story(random.Random(s), f"c-{s}", TOLERANCE, DEDUP) for s in range(150)]
    classes, endings, timed_out_in = Counter(), Counter(), Counter()
    text_only = late_credentials = lost = kept_on_accounts = 0
    for told in stories:
        endings[told.ending] += 1
        truth_ids = {e.event_id for e in told.truth}
        replay = Oracle(DEDUP)
        for e in told.truth:
            kept_on_accounts += (
                e.type is E.ACCOUNTS_SYNC_FAILED
                and e.failure is not None
                and e.failure.failure_class.value == CREDENTIALS
                and replay.result.credentials_valid is True
            )
            replay.apply(e)
            if e.failure is not None:
                classes[e.failure.failure_class.value] += 1
            elif e.error and e.type.name.endswith("FAILED"):
                text_only += 1
        late_credentials += sum(
            e.event_id not in truth_ids
            and e.failure is not None
            and e.failure.failure_class.value == CREDENTIALS
            for e in told.arrivals
        )
        oracle = Oracle(DEDUP)
        for e in told.truth:
            oracle.apply(e)
        lost += oracle.result.credentials_valid is False
        if oracle.timeout_due() is E.STAGE_TIMED_OUT:
            status = oracle.result.status
            covered = [p.name for p in (SOURCE_SYNC, DATA_REFRESH) if status in p.covers]
            timed_out_in[covered[0] if covered else "neither"] += 1
    assert set(classes) == {c.value for c in FailureClass}, classes
    assert classes[CREDENTIALS] > 40 and text_only > 40, (classes, text_only)
    assert timed_out_in[SOURCE_SYNC.name] > 20, timed_out_in
    assert timed_out_in[DATA_REFRESH.name] > 10, timed_out_in
    assert endings["revoked"] > 10 and endings["new session"] > 20, endings
    assert late_credentials > 5 and lost > 20, (late_credentials, lost)
    assert kept_on_accounts > 4, kept_on_accounts


def engine_view(events: list[SessionEvent]) -> ConnectionView:
    store = FakeStore()
    StatusEngine(store, POLICY, clock=Clock()).apply_batch([Inbound(e) for e in events])
    return store.tables.views[events[0].connection_id]


def test_a_failed_account_sync_of_class_credentials_sets_only_the_accounts_error():
    """docs/contract.md: account events belong to no session, so one that is late (from
    before a re-connect) cannot be told from a current one: it never takes credentials away."""
    events = [
        event(E.AUTHORIZATION_STARTED, "acc-1"),
        event(E.AUTHORIZATION_SUCCEEDED, "acc-1"),
        event(E.ACCOUNTS_SYNC_STARTED, "acc-1"),
        replace(
            event(E.ACCOUNTS_SYNC_FAILED, "acc-1", error="token expired"),
            failure=Failure(FailureClass.CREDENTIALS, False, "invalid_grant"),
        ),
    ]
    view, want = engine_view(events), expected(events, DEDUP)
    assert (view.credentials_valid, want.credentials_valid) == (True, True)
    assert (view.accounts_state.value, view.accounts_error) == ("error", "token expired")
    assert (want.accounts_state, want.accounts_error) == ("error", "token expired")


def test_a_failed_account_sync_without_error_text_reads_as_the_views_default():
    events = [
        event(E.AUTHORIZATION_STARTED, "acc-2"),
        event(E.AUTHORIZATION_SUCCEEDED, "acc-2"),
        event(E.ACCOUNTS_SYNC_FAILED, "acc-2"),
    ]
    want = expected(events, DEDUP)
    assert (want.accounts_state, want.accounts_error) == ("error", "Accounts could not be listed")
    assert engine_view(events).accounts_error == want.accounts_error


def _until(kind: EventType, then: EventType | None = None, **then_has) -> list[SessionEvent]:
    """A session that goes well up to `kind`, then `then` (a re-authorization opens s-2)."""
    events = happy_session("conn-r", "s-1")
    events = events[: [e.type for e in events].index(kind) + 1]
    if then is not None:
        session = "s-2" if then is E.AUTHORIZATION_STARTED else "s-1"
        events.append(event(then, "conn-r", session, **then_has))
    return events


def _at(events: list[SessionEvent], kind: EventType) -> datetime:
    return next(e.occurred_at for e in events if e.type is kind)


def _swept(events: list[SessionEvent]) -> tuple[ConnectionView, Expected, str]:
    """The engine's view and the oracle's after the sweeper timed the connection out, and the
    sweeper's reason (its wording, which the oracle does not model)."""
    told = FailureStory("conn-r", events[0].app, events, events, ["s-1"])
    store, swept = run_engine([events], Clock())
    return store.tables.views["conn-r"], predicted(told, swept), swept["conn-r"].error


def test_a_part_sitting_at_its_last_status_is_still_in_progress():
    """Stuck at 15 Structured, and at 18 Processed: the part succeeds only once the session goes
    on (15 -> 16, 18 -> 19), since from there it can still time out to 23."""
    at15 = _until(E.STRUCTURING_COMPLETED)
    loading = _at(at15, E.LOADING_STARTED)
    view, want = engine_view(at15), expected(at15, DEDUP)
    assert want.source_sync == Run("in_progress", loading)
    assert want.data_refresh == Run()
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)

    at18 = _until(E.PROCESSING_COMPLETED)
    loading, processing = _at(at18, E.LOADING_STARTED), _at(at18, E.PROCESSING_STARTED)
    view, want = engine_view(at18), expected(at18, DEDUP)
    assert want.source_sync == Run("success", loading, processing)
    assert want.data_refresh == Run("in_progress", processing)
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)


def test_a_timeout_from_a_parts_last_status_is_that_parts_error():
    at15 = _until(E.STRUCTURING_COMPLETED)
    loading = _at(at15, E.LOADING_STARTED)
    view, want, reason = _swept(at15)
    assert reason.startswith("Structured unchanged")
    assert want.status is Status.TIMED_OUT
    assert want.source_sync == Run("error", loading, None, SWEEP_AT, reason)
    assert want.data_refresh == Run()
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)

    at18 = _until(E.PROCESSING_COMPLETED)
    loading, processing = _at(at18, E.LOADING_STARTED), _at(at18, E.PROCESSING_STARTED)
    view, want, reason = _swept(at18)
    assert reason.startswith("Processed unchanged")
    assert want.source_sync == Run("success", loading, processing)
    assert want.data_refresh == Run("error", processing, None, SWEEP_AT, reason)
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)


def test_a_run_cut_off_by_a_status_neither_part_covers_fails_then():
    """A new authorization (6) fails the run with "Interrupted: <label>" when the event says
    nothing; Disconnected (26) with the event's error: no card shows a run nothing will end."""
    reauthorized = _until(E.STRUCTURING_STARTED, E.AUTHORIZATION_STARTED)
    loading, cut = _at(reauthorized, E.LOADING_STARTED), reauthorized[-1].occurred_at
    view, want = engine_view(reauthorized), expected(reauthorized, DEDUP)
    assert want.status is Status.AUTHORIZATION
    assert want.source_sync == Run("error", loading, None, cut, "Interrupted: Authorization")
    assert want.data_refresh == Run()
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)

    disconnected = _until(E.PROCESSING_STARTED, E.DISCONNECTED, error="app uninstalled")
    loading, processing = (
        _at(disconnected, E.LOADING_STARTED),
        _at(disconnected, E.PROCESSING_STARTED),
    )
    cut = disconnected[-1].occurred_at
    view, want = engine_view(disconnected), expected(disconnected, DEDUP)
    assert want.status is Status.DISCONNECTED
    assert want.source_sync == Run("success", loading, processing)
    assert want.data_refresh == Run("error", processing, None, cut, "app uninstalled")
    assert card(view.source_sync) == card(want.source_sync)
    assert card(view.data_refresh) == card(want.data_refresh)
