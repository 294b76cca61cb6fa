"""The status engine's use cases on the in-memory store: idempotency, parking, the sweeper,
dead letters, views, and a batch retried after losing an optimistic-concurrency race.

The fake passes the same unit-of-work contract as PostgreSQL (tests/helpers/store_contract.py);
the cases that need real concurrent transactions stay in tests/integration/test_engine.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound, Origin, RejectedMessage
from syncstatus.service.ports import ConcurrentUpdate
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import Account, EventType
from syncstatus.statemachine.statuses import Status
from tests.helpers.factories import T0, event, happy_session
from tests.helpers.fake_store import FakeStore
from tests.helpers.streams import stream

E = EventType
POLICY = Policy(park_window=timedelta(seconds=60), authorization_timeout=timedelta(minutes=15))


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def engine(store: FakeStore, clock: Clock) -> StatusEngine:
    return StatusEngine(store, POLICY, clock=clock)


def origin(offset: int) -> Origin:
    return Origin("t.pipeline", 3, offset, b"conn-1", b"\xc3\x01original bytes")


def reasons(store: FakeStore) -> list[tuple[str, object]]:
    return [(d.reason, d.event_id) for d in store.dead_letters()]


def test_a_session_is_stored_with_history_and_outbox(engine, store):
    result = engine.apply_batch([Inbound(e) for e in happy_session()])
    assert set(result.outcomes) == {Outcome.APPLIED}
    assert len(result.transitions) == 14
    row = store.connection("conn-1")
    assert (row.status, row.version) == (Status.SYNCED, 14)
    history = store.history("conn-1")
    assert [t.sequence for t in history] == list(range(1, 15))
    assert history[0].from_status is None and history[-1].to_status is Status.SYNCED
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_status is before.to_status
    assert store.tables.outbox == [("conn-1", s) for s in range(1, 15)]
    assert store.commits == 1


def test_a_duplicate_changes_nothing_and_says_so(engine, store):
    first = event(E.AUTHORIZATION_STARTED)
    assert engine.apply_event(first) is Outcome.APPLIED
    assert engine.apply_event(first) is Outcome.DUPLICATE
    in_one_batch = event(E.AUTHORIZATION_SUCCEEDED)
    outcomes = engine.apply_batch([Inbound(in_one_batch), Inbound(in_one_batch)]).outcomes
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    again = engine.apply_batch([Inbound(first), Inbound(in_one_batch)])
    assert again.outcomes == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert again.transitions == []
    assert [t.event_id for t in store.history()] == [first.event_id, in_one_batch.event_id]
    assert store.dead_letters() == []


def test_events_applied_one_by_one_or_in_batches_give_the_same_history(engine, store):
    for e in happy_session("one-by-one"):
        engine.apply_event(e)
    engine.apply_batch([Inbound(e) for e in happy_session("batched")])
    histories = {
        cid: [(t.from_status, t.to_status, t.event_type) for t in store.history(cid)]
        for cid in ("one-by-one", "batched")
    }
    assert len(histories["batched"]) == 14
    assert histories["one-by-one"] == histories["batched"]


def test_an_interleaved_stream_brings_every_connection_to_synced(engine, store):
    events = stream(30, "s")
    for i in range(0, len(events), 100):
        engine.apply_batch([Inbound(e) for e in events[i : i + 100]])
    assert {(r.status, r.version) for r in store.tables.connections.values()} == {
        (Status.SYNCED, 14)
    }
    assert len(store.tables.connections) == 30
    assert len(store.tables.processed) == len(events) == len(store.history())


def test_parked_events_are_stored_and_released_by_a_later_batch(engine, store):
    started, succeeded = (event(k) for k in (E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED))
    loading = event(E.LOADING_STARTED, producer="pipeline")
    assert engine.apply_event(loading, origin(5)) is Outcome.PARKED
    assert [p.event_id for p in store.parked()] == [loading.event_id]
    assert store.parked()[0].origin == origin(5)
    assert store.connection("conn-1") is None
    engine.apply_event(started)
    result = engine.apply_batch([Inbound(succeeded)])
    assert result.outcomes == [Outcome.APPLIED]
    assert [t.event_id for t in result.transitions] == [succeeded.event_id, loading.event_id]
    assert store.connection("conn-1").status is Status.LOADING
    assert store.parked() == []


def test_refusals_are_dead_lettered_with_their_reason_and_origin(engine, store):
    for e in happy_session():
        engine.apply_event(e)
    illegal = event(E.LOADING_COMPLETED)
    stale = event(E.STRUCTURING_FAILED, at=T0)
    assert engine.apply_event(illegal, origin(7)) is Outcome.REFUSED
    assert engine.apply_event(stale) is Outcome.REFUSED
    letters = store.dead_letters()
    assert [(d.reason, d.event_id, d.from_status) for d in letters] == [
        ("illegal_transition", illegal.event_id, Status.SYNCED),
        ("stale", stale.event_id, Status.SYNCED),
    ]
    assert [d.origin for d in letters] == [origin(7), None]
    assert store.connection("conn-1").version == 14


def test_a_parked_event_refused_later_is_dead_lettered_with_the_message_it_came_in(engine, store):
    """Its origin was stored with it when it parked; the batch that refuses it has no other."""
    engine.apply_event(event(E.AUTHORIZATION_STARTED, session_id="s-1"))
    waiting = event(E.LOADING_STARTED, session_id="s-1", producer="pipeline")
    assert engine.apply_event(waiting, origin(9)) is Outcome.PARKED
    reauthorizing = event(E.AUTHORIZATION_STARTED, session_id="s-2", producer="auth")
    result = engine.apply_batch([Inbound(reauthorizing)])
    assert [(r.reason.value, r.event.event_id) for r in result.refusals] == [
        ("superseded_session", waiting.event_id)
    ]
    (letter,) = store.dead_letters()
    assert (letter.reason, letter.event_id, letter.origin) == (
        "superseded_session",
        waiting.event_id,
        origin(9),
    )
    assert store.parked() == []


def test_rejected_messages_are_dead_lettered_beside_the_batch(engine, store):
    bad = RejectedMessage("undecodable", "not Avro", origin(11))
    result = engine.apply_batch([Inbound(event(E.AUTHORIZATION_STARTED))], rejected=[bad])
    assert result.outcomes == [Outcome.APPLIED]
    assert [(d.reason, d.detail, d.event_id, d.origin) for d in store.dead_letters()] == [
        ("undecodable", "not Avro", None, origin(11))
    ]


def test_the_sweeper_times_out_stale_statuses_like_an_event(engine, store, clock):
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c-auth"))
    for e in happy_session("c-loading")[:3]:
        engine.apply_event(e)
    assert engine.sweep().transitions == []
    clock.now += timedelta(minutes=16)
    swept = engine.sweep()
    assert [(t.connection_id, t.to_status) for t in swept.transitions] == [
        ("c-auth", Status.AUTHORIZATION_TIMEDOUT)
    ]
    assert engine.sweep().transitions == [], "timed out once"
    clock.now += timedelta(hours=6)
    assert [(t.connection_id, t.to_status) for t in engine.sweep().transitions] == [
        ("c-loading", Status.TIMED_OUT)
    ]
    timeouts = sorted(
        (t.connection_id, t.event_type.value, t.producer)
        for t in store.history()
        if t.to_status in (Status.AUTHORIZATION_TIMEDOUT, Status.TIMED_OUT)
    )
    assert timeouts == [
        ("c-auth", "AUTHORIZATION_TIMED_OUT", "syncstatus.sweeper"),
        ("c-loading", "STAGE_TIMED_OUT", "syncstatus.sweeper"),
    ]
    assert len(store.tables.outbox) == 6


def test_sweeping_in_small_steps_times_out_each_connection_exactly_once(engine, store, clock):
    engine.apply_batch([Inbound(event(E.AUTHORIZATION_STARTED, f"c-{i}")) for i in range(120)])
    clock.now += timedelta(hours=1)
    steps = []
    while swept := engine.sweep(limit=25).transitions:
        steps.append(len(swept))
    assert steps == [25, 25, 25, 25, 20]
    timed_out = [t.connection_id for t in store.history() if t.to_status == 20]
    assert sorted(timed_out) == sorted(f"c-{i}" for i in range(120))


def test_the_sweeper_refuses_events_parked_too_long(engine, store, clock):
    engine.apply_event(event(E.AUTHORIZATION_STARTED))
    waiting = event(E.LOADING_COMPLETED)
    assert engine.apply_batch([Inbound(waiting, origin(41))]).outcomes == [Outcome.PARKED]
    clock.now += timedelta(seconds=60)
    assert engine.sweep().refusals == [], "not yet past the park window"
    clock.now += timedelta(seconds=1)
    swept = engine.sweep()
    assert [r.reason.value for r in swept.refusals] == ["parked_too_long"]
    assert reasons(store) == [("parked_too_long", waiting.event_id)]
    assert store.dead_letters()[0].origin == origin(41)
    assert store.parked() == []
    assert engine.sweep().refusals == [], "refused once"


def test_the_view_follows_the_events_in_the_same_unit_of_work(engine, store):
    started = event(E.AUTHORIZATION_STARTED)
    succeeded = event(
        E.AUTHORIZATION_SUCCEEDED,
        attributes={"business_account": "ads@acme.example", "credential_id": "cred-1"},
    )
    engine.apply_batch([Inbound(started), Inbound(succeeded)])
    view = store.tables.views["conn-1"]
    assert (view.status, view.business_account, view.credentials_valid) == (
        Status.AUTHORIZED,
        "ads@acme.example",
        True,
    )
    assert view.main_credential == "cred-1" and view.account_status == "No accounts"
    listed = (Account("acc-1", "Main", "active"), Account("acc-2", "Old", "closed"))
    engine.apply_event(event(E.ACCOUNTS_SYNCED, accounts=listed, producer="accounts"))
    view = store.tables.views["conn-1"]
    assert view.account_status == "2 accounts" and view.active_accounts == 1
    engine.apply_event(event(E.DISCONNECTED, session_id="admin-1", producer="admin"))
    view = store.tables.views["conn-1"]
    assert (view.status, view.credentials_valid) == (Status.DISCONNECTED, False)
    assert view.created_at == T0 + timedelta(hours=1)
    assert [a.event_type for a in store.tables.activity] == ["ACCOUNTS_SYNCED"]


class Interleaving:
    """A clock that lets another writer commit to the same connection while the engine holds
    it loaded, the first `times` times the engine reads the time."""

    def __init__(self, clock: Clock, interfere: Callable[[int], None], times: int) -> None:
        self.clock, self.interfere, self.times, self.calls = clock, interfere, times, 0

    def __call__(self) -> datetime:
        self.calls += 1
        if self.calls <= self.times:
            self.interfere(self.calls)
        return self.clock()


def test_a_batch_that_loses_a_race_is_retried_on_fresh_state(store, clock):
    other = StatusEngine(store, POLICY, clock=clock)
    other.apply_event(event(E.AUTHORIZATION_STARTED, producer="auth"))
    succeeded = event(E.AUTHORIZATION_SUCCEEDED, producer="auth")
    racing = Interleaving(clock, lambda _: other.apply_event(succeeded), times=1)
    engine = StatusEngine(store, POLICY, clock=racing)

    disconnected = event(E.DISCONNECTED, session_id="admin-1", producer="admin")
    result = engine.apply_batch([Inbound(disconnected)])

    assert racing.calls == 2, "decided twice: once on stale state, once on fresh"
    assert result.outcomes == [Outcome.APPLIED]
    assert [(t.from_status, t.to_status) for t in result.transitions] == [
        (Status.AUTHORIZED, Status.DISCONNECTED)
    ]
    history = store.history("conn-1")
    assert [(t.sequence, t.event_id) for t in history] == [
        (1, history[0].event_id),
        (2, succeeded.event_id),
        (3, disconnected.event_id),
    ]
    assert store.connection("conn-1").version == 3
    assert len(store.tables.views) == 1 and store.tables.views["conn-1"].status == 26


def test_a_batch_that_always_loses_gives_up_and_keeps_nothing(store, clock):
    other = StatusEngine(store, POLICY, clock=clock)
    other.apply_event(event(E.AUTHORIZATION_STARTED, producer="auth"))
    rivals = [
        event(E.AUTHORIZATION_SUCCEEDED, producer="auth"),
        event(E.LOADING_STARTED, producer="pipeline"),
        event(E.LOADING_COMPLETED, producer="pipeline"),
    ]
    racing = Interleaving(clock, lambda call: other.apply_event(rivals[call - 1]), times=3)
    engine = StatusEngine(store, POLICY, clock=racing, attempts=3)
    mine = event(E.DISCONNECTED, session_id="admin-1", producer="admin")

    with pytest.raises(ConcurrentUpdate):
        engine.apply_batch(
            [Inbound(mine)], rejected=[RejectedMessage("undecodable", "x", origin(1))]
        )

    assert racing.calls == 3
    assert mine.event_id not in store.tables.processed
    assert store.dead_letters() == []
    assert store.connection("conn-1").status is Status.LOADED, "the rivals' three won"
    assert [t.event_id for t in store.history()][1:] == [r.event_id for r in rivals]
