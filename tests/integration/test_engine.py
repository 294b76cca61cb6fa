"""The status engine on real PostgreSQL: idempotency, concurrency, parking, the sweeper."""

from __future__ import annotations

import gc
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from syncstatus.runtime.heap import youngest_threshold
from syncstatus.service.engine import StatusEngine, record
from syncstatus.service.inbound import Inbound, Origin
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Outcome, Policy
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import T0, event, happy_session
from tests.helpers.streams import stream

E = EventType
POLICY = Policy(park_window=timedelta(seconds=60), authorization_timeout=timedelta(minutes=15))


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def __call__(self):
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(db_engine, clock) -> StatusEngine:
    return StatusEngine(PostgresStore(db_engine), POLICY, clock=clock)


def rows(db_engine, sql, **params):
    with db_engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def test_a_session_is_stored_with_history_and_outbox(engine, db_engine):
    result = engine.apply_batch([Inbound(e) for e in happy_session()])
    assert set(result.outcomes) == {Outcome.APPLIED}
    assert rows(db_engine, "SELECT status, version FROM connections") == [(19, 14)]
    history = rows(
        db_engine, "SELECT sequence, from_status, to_status FROM status_history ORDER BY sequence"
    )
    assert [h.sequence for h in history] == list(range(1, 15))
    assert history[0].from_status is None and history[-1].to_status == 19
    assert rows(db_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(14,)]


def test_a_duplicate_changes_nothing_and_says_so(engine, db_engine):
    first = event(E.AUTHORIZATION_STARTED)
    assert engine.apply_event(first) is Outcome.APPLIED
    assert engine.apply_event(first) is Outcome.DUPLICATE
    in_one_batch = event(E.AUTHORIZATION_SUCCEEDED)
    outcomes = engine.apply_batch([Inbound(in_one_batch), Inbound(in_one_batch)]).outcomes
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert rows(db_engine, "SELECT count(*) FROM status_history") == [(2,)]


def test_events_applied_one_by_one_or_in_batches_give_the_same_history(engine, db_engine):
    for e in happy_session("one-by-one"):
        engine.apply_event(e)
    engine.apply_batch([Inbound(e) for e in happy_session("batched")])
    histories = {
        cid: rows(
            db_engine,
            "SELECT from_status, to_status, event_type FROM status_history "
            "WHERE connection_id = :c ORDER BY sequence",
            c=cid,
        )
        for cid in ("one-by-one", "batched")
    }
    assert histories["one-by-one"] == histories["batched"]


def test_parked_events_are_stored_and_released_by_a_later_batch(engine, db_engine):
    started, succeeded, loading = (
        event(k) for k in (E.AUTHORIZATION_STARTED, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED)
    )
    assert engine.apply_event(loading) is Outcome.PARKED
    assert rows(db_engine, "SELECT count(*) FROM parked_events") == [(1,)]
    engine.apply_event(started)
    assert engine.apply_event(succeeded) is Outcome.APPLIED
    assert rows(db_engine, "SELECT status FROM connections") == [(Status.LOADING,)]
    assert rows(db_engine, "SELECT count(*) FROM parked_events") == [(0,)]


def test_refusals_are_recorded_with_their_reason(engine, db_engine):
    for e in happy_session():
        engine.apply_event(e)
    illegal = event(E.LOADING_COMPLETED)
    stale = event(E.STRUCTURING_FAILED, at=T0)
    assert engine.apply_event(illegal) is Outcome.REFUSED
    assert engine.apply_event(stale) is Outcome.REFUSED
    assert rows(
        db_engine, "SELECT reason, event_id, from_status FROM dead_letters ORDER BY id"
    ) == [("illegal_transition", illegal.event_id, 19), ("stale", stale.event_id, 19)]


def test_two_concurrent_writers_on_one_connection_never_both_win(db_engine, clock):
    events = happy_session()
    writers = [StatusEngine(PostgresStore(db_engine), POLICY, clock=clock) for _ in range(2)]
    writers[0].apply_event(events[0])
    outcomes: list = []
    barrier = threading.Barrier(2)

    def write(engine, e):
        barrier.wait()
        outcomes.append(engine.apply_event(e))

    # The same event from two writers: exactly one applies it.
    threads = [threading.Thread(target=write, args=(w, events[1])) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.value for o in outcomes) == ["applied", "duplicate"]
    # Two different events at once: both apply, one after the other, no sequence lost.
    outcomes.clear()
    # From two producers: one producer's earlier event arriving after its later one is stale.
    reauthorizing = event(E.AUTHORIZATION_STARTED, session_id="s-2", producer="auth")
    disconnected = event(E.DISCONNECTED, session_id="admin-1", producer="admin")
    threads = [
        threading.Thread(target=write, args=(w, e))
        for w, e in zip(writers, (reauthorizing, disconnected), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = rows(
        db_engine, "SELECT sequence, from_status, to_status FROM status_history ORDER BY sequence"
    )
    assert [h.sequence for h in history] == [1, 2, 3, 4]
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED]
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_status == before.to_status
    assert rows(db_engine, "SELECT version FROM connections") == [(4,)]


def test_an_event_that_arrives_during_a_transition_is_decided_on_its_result(db_engine, clock):
    first, second = (StatusEngine(PostgresStore(db_engine), POLICY, clock=clock) for _ in "ab")
    first.apply_event(event(E.AUTHORIZATION_STARTED))
    succeeded, loading = event(E.AUTHORIZATION_SUCCEEDED), event(E.LOADING_STARTED)
    outcome: list[Outcome] = []
    beside = threading.Thread(target=lambda: outcome.append(second.apply_event(loading)))
    with first.store.unit_of_work() as uow:
        connection = uow.connections.load({"conn-1": {"s-1"}})["conn-1"]
        assert connection.accept(succeeded, clock(), POLICY) is Outcome.APPLIED
        beside.start()
        beside.join(timeout=1)
        assert beside.is_alive(), "the second writer did not wait for the first"
        record(uow, [connection])
    beside.join(timeout=10)
    assert outcome == [Outcome.APPLIED]
    assert rows(db_engine, "SELECT status, version FROM connections") == [(Status.LOADING, 3)]
    assert rows(db_engine, "SELECT count(*) FROM parked_events") == [(0,)]


def test_the_sweeper_times_out_stale_statuses_like_an_event(engine, db_engine, clock):
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c-auth"))
    for e in happy_session("c-loading")[:3]:
        engine.apply_event(e)
    assert engine.sweep().transitions == []
    clock.now += timedelta(minutes=16)
    swept = engine.sweep()
    assert [(t.connection_id, t.to_status) for t in swept.transitions] == [
        ("c-auth", Status.AUTHORIZATION_TIMEDOUT)
    ]
    clock.now += timedelta(hours=6)
    assert [(t.connection_id, t.to_status) for t in engine.sweep().transitions] == [
        ("c-loading", Status.TIMED_OUT)
    ]
    timeouts = rows(
        db_engine,
        "SELECT connection_id, event_type, producer FROM status_history "
        "WHERE to_status IN (20, 23) ORDER BY connection_id",
    )
    assert timeouts == [
        ("c-auth", "AUTHORIZATION_TIMED_OUT", "syncstatus.sweeper"),
        ("c-loading", "STAGE_TIMED_OUT", "syncstatus.sweeper"),
    ]
    assert rows(db_engine, "SELECT count(*) FROM outbox") == [(6,)]


def test_two_sweepers_time_out_each_connection_exactly_once(db_engine, clock):
    writer = StatusEngine(PostgresStore(db_engine), POLICY, clock=clock)
    writer.apply_batch([Inbound(event(E.AUTHORIZATION_STARTED, f"c-{i}")) for i in range(200)])
    clock.now += timedelta(hours=1)
    sweepers = [StatusEngine(PostgresStore(db_engine), POLICY, clock=clock) for _ in range(2)]
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep(sweeper):
        barrier.wait()
        total = 0
        while swept := sweeper.sweep(limit=20).transitions:
            total += len(swept)
        counts.append(total)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 200
    assert rows(
        db_engine,
        "SELECT count(*), count(DISTINCT connection_id) FROM status_history WHERE to_status = 20",
    ) == [(200, 200)]


def test_the_sweeper_refuses_events_parked_too_long(engine, db_engine, clock):
    engine.apply_event(event(E.AUTHORIZATION_STARTED))
    waiting = event(E.LOADING_COMPLETED)
    origin = Origin("t.pipeline", 3, 41, b"conn-1", b"\xc3\x01original bytes")
    assert engine.apply_batch([Inbound(waiting, origin)]).outcomes == [Outcome.PARKED]
    clock.now += timedelta(seconds=61)
    swept = engine.sweep()
    assert [r.reason.value for r in swept.refusals] == ["parked_too_long"]
    assert rows(db_engine, "SELECT reason, event_id FROM dead_letters") == [
        ("parked_too_long", waiting.event_id)
    ]
    (stored,) = rows(db_engine, "SELECT origin FROM dead_letters")
    assert Origin.from_json(stored.origin) == origin
    assert rows(db_engine, "SELECT count(*) FROM parked_events") == [(0,)]


def test_full_batches_leave_the_collector_idle_under_the_service_thresholds(engine):
    """`syncstatus run` sets the youngest generation's threshold so that a batch's objects,
    which all live until the batch ends, are freed by reference counting before the collector
    walks them (runtime/heap.py). These are the worst batches: each event of another
    connection, at every step of their sessions."""
    size = Settings.model_fields["batch_size"].default
    events = stream(size)
    engine.apply_batch([Inbound(e) for e in events[:size]])
    collections: list[int] = []
    saved = gc.get_threshold()

    def on_collect(phase: str, info: dict[str, int]) -> None:
        collections.append(info["generation"])

    gc.collect()
    try:
        gc.set_threshold(youngest_threshold(size), *saved[1:])
        gc.callbacks.append(on_collect)
        outcomes = {
            outcome
            for step in range(size, len(events), size)
            for outcome in engine.apply_batch(
                [Inbound(e) for e in events[step : step + size]]
            ).outcomes
        }
    finally:
        if on_collect in gc.callbacks:
            gc.callbacks.remove(on_collect)
        gc.set_threshold(*saved)
    assert outcomes == {Outcome.APPLIED}
    assert collections == []
