"""The unit-of-work contract on the in-memory fake the engine's unit tests run on."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from syncstatus.service.ports import ConcurrentUpdate
from syncstatus.statemachine.connection import Policy, Transition
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.statuses import Status
from tests.helpers.factories import T0, event
from tests.helpers.fake_store import FakeStore
from tests.helpers.store_contract import DeadLetter, Redriven, StoreContract

E = EventType
POLICY = Policy()


class TestFakeStore(StoreContract):
    @pytest.fixture
    def store(self) -> FakeStore:
        return FakeStore()

    def dead_letters(self, store: FakeStore) -> list[DeadLetter]:
        return [
            (d.reason, d.detail, d.event_id, d.connection_id, d.event_type, d.from_status, d.origin)
            for d in store.dead_letters()
        ]

    def history(self, store: FakeStore, connection_id: str) -> list[Transition]:
        return sorted(store.history(connection_id), key=lambda t: t.sequence)

    def outbox(self, store: FakeStore) -> list[tuple[str, int]]:
        return list(store.tables.outbox)

    def activity(self, store: FakeStore) -> list[tuple[str, uuid.UUID, str]]:
        return [(a.connection_id, a.event_id, a.event_type) for a in store.tables.activity]

    def redriven(self, store: FakeStore) -> list[Redriven]:
        return [
            (d.id, d.producer, d.redriven_by, d.redriven_at, d.redrive_count)
            for d in sorted(store.dead_letters(), key=lambda d: d.id)
        ]

    def redrives(self, store: FakeStore) -> list[tuple[int, str, datetime]]:
        return [(r.dead_letter_id, r.requested_by, r.requested_at) for r in store.redrives()]


# What the fake does that PostgreSQL never lets happen: two units of work in one thread holding
# the same connection (PostgreSQL makes the second wait for the first). The optimistic checks
# must then refuse the one that comes second, at save or at commit.

NOW = T0 + timedelta(hours=1)


def _started(store: FakeStore) -> None:
    with store.unit_of_work() as uow:
        c = uow.connections.load({"c-1": ()})["c-1"]
        c.accept(event(E.AUTHORIZATION_STARTED, "c-1", producer="auth"), NOW, POLICY)
        uow.connections.save([c], {})


def test_a_writer_that_saves_after_another_committed_is_refused_at_save():
    store = FakeStore()
    _started(store)
    with pytest.raises(ConcurrentUpdate), store.unit_of_work() as late:
        mine = late.connections.load({"c-1": ()})["c-1"]
        with store.unit_of_work() as early:
            theirs = early.connections.load({"c-1": ()})["c-1"]
            theirs.accept(event(E.AUTHORIZATION_SUCCEEDED, "c-1", producer="auth"), NOW, POLICY)
            early.connections.save([theirs], {})
        mine.accept(event(E.DISCONNECTED, "c-1", "admin-1", producer="admin"), NOW, POLICY)
        late.connections.save([mine], {})
        pytest.fail("saved over a newer version")
    assert store.connection("c-1").status is Status.AUTHORIZED


def test_a_writer_whose_row_changed_between_save_and_commit_is_refused_at_commit():
    store = FakeStore()
    _started(store)
    claimed = uuid.uuid4()
    with pytest.raises(ConcurrentUpdate), store.unit_of_work() as late:
        late.processed.claim([claimed])
        mine = late.connections.load({"c-1": ()})["c-1"]
        mine.accept(event(E.DISCONNECTED, "c-1", "admin-1", producer="admin"), NOW, POLICY)
        late.connections.save([mine], {})
        with store.unit_of_work() as early:
            theirs = early.connections.load({"c-1": ()})["c-1"]
            theirs.accept(event(E.AUTHORIZATION_SUCCEEDED, "c-1", producer="auth"), NOW, POLICY)
            early.connections.save([theirs], {})
    assert store.connection("c-1").status is Status.AUTHORIZED
    assert claimed not in store.tables.processed
    assert [t.to_status for t in store.history("c-1")] == [
        Status.AUTHORIZATION,
        Status.AUTHORIZED,
    ]


def test_an_event_claimed_by_two_open_units_of_work_lands_once():
    store = FakeStore()
    event_id = uuid.uuid4()
    with pytest.raises(ConcurrentUpdate), store.unit_of_work() as late:
        assert late.processed.claim([event_id]) == {event_id}
        with store.unit_of_work() as early:
            assert early.processed.claim([event_id]) == {event_id}
    assert store.tables.processed == {event_id}
    assert store.commits == 1
