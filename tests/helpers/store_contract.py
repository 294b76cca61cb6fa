"""The unit-of-work contract, one suite for every backend of the `Store` port.

Subclass `StoreContract` as `Test...` beside a `store` fixture and the four read-back hooks
(what the port has no reader for: dead letters, history, outbox, activity); pytest collects
the subclass, never this module. `tests/unit/test_fake_store.py` runs it on the in-memory
fake, `tests/integration/test_postgres_store.py` on PostgreSQL, so the unit tests that run the
engine on the fake stand on the same semantics as production.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from syncstatus.service.inbound import Origin, RejectedMessage
from syncstatus.service.ports import ConcurrentUpdate, Store
from syncstatus.statemachine.connection import (
    Connection,
    Outcome,
    ParkedEvent,
    Policy,
    Refusal,
    RefusalReason,
    Transition,
)
from syncstatus.statemachine.events import Account, EventType, Substage
from syncstatus.statemachine.runs import RunOutcome, RunState
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import AccountRow, AccountsState, ConnectionView, CredentialRow
from tests.helpers.factories import T0, event, happy_session

E = EventType
POLICY = Policy()
NOW = T0 + timedelta(hours=1)
STORED_FIELDS = (
    "app",
    "status",
    "version",
    "session_id",
    "session_opened_at",
    "session_opened_by",
    "status_changed_at",
    "completed_substages",
    "timed_out_from",
    "holds_credentials",
    "deleted_at",
    "workspace_id",
)
"""What a connection row keeps, producer marks aside (they are compared in order)."""

DeadLetter = tuple[str, str, uuid.UUID | None, str | None, str | None, int | None, Origin | None]
"""reason, detail, event id, connection id, event type, from status, origin."""
Redriven = tuple[int, str | None, str | None, datetime | None, int]
"""A dead letter's id, producer, who last asked for its redrive, when, and how often."""


def origin(offset: int) -> Origin:
    headers = (("trace", b"t-%d" % offset), ("binary", b"\x00\xff"))
    return Origin(
        "t.pipeline", 3, offset, b"conn-1", b"\xc3\x01original bytes %d" % offset, headers
    )


def applied(connection: Connection, *events: Any, now: datetime = NOW) -> Connection:
    for e in events:
        assert connection.accept(e, now, POLICY) is Outcome.APPLIED, e
    return connection


def stored(connection: Connection) -> tuple[Any, ...]:
    return (
        *(getattr(connection, name) for name in STORED_FIELDS),
        list(connection.producer_marks.items()),
    )


def in_progress(connection_id: str) -> Connection:
    """Every field of the row set: three producers' marks, substages, credentials, an
    activity, and a transition with attributes (which history does not keep)."""
    c = Connection(connection_id=connection_id)
    return applied(
        c,
        event(E.AUTHORIZATION_STARTED, connection_id, producer="auth", workspace_id="acme"),
        event(
            E.AUTHORIZATION_SUCCEEDED,
            connection_id,
            producer="auth",
            attributes={"credential_id": "cred-1"},
        ),
        event(E.LOADING_STARTED, connection_id, producer="pipeline"),
        event(E.LOADING_COMPLETED, connection_id, producer="pipeline"),
        event(E.STRUCTURING_STARTED, connection_id, producer="pipeline"),
        event(E.STRUCTURING_COMPLETED, connection_id, producer="pipeline"),
        event(E.PROCESSING_STARTED, connection_id, producer="pipeline"),
        *(
            event(E.PROCESSING_SUBSTAGE_COMPLETED, connection_id, producer="pipeline", substage=s)
            for s in list(Substage)[:2]
        ),
        event(
            E.ACCOUNTS_SYNCED,
            connection_id,
            producer="accounts",
            accounts=(Account("a-1", "Main", "active"),),
        ),
    )


def timed_out(connection_id: str) -> Connection:
    c = applied(
        Connection(connection_id=connection_id),
        event(E.AUTHORIZATION_STARTED, connection_id),
        event(E.AUTHORIZATION_SUCCEEDED, connection_id),
        event(E.LOADING_STARTED, connection_id),
    )
    later = NOW + timedelta(hours=7)
    timeout = c.due_timeout(later, POLICY)
    assert timeout is not None
    return applied(c, timeout, now=later)


def deleted(connection_id: str) -> Connection:
    c = applied(
        Connection(connection_id=connection_id), event(E.AUTHORIZATION_STARTED, connection_id)
    )
    return applied(c, c.deletion(uuid.uuid4(), NOW + timedelta(minutes=1)))


class StoreContract:
    """What every `Store` must do; a subclass gives `store` and the read-back hooks."""

    # -- the hooks

    def dead_letters(self, store: Store) -> list[DeadLetter]:
        raise NotImplementedError

    def history(self, store: Store, connection_id: str) -> list[Transition]:
        """Ordered by sequence."""
        raise NotImplementedError

    def outbox(self, store: Store) -> list[tuple[str, int]]:
        """Connection id and sequence, in the order written."""
        raise NotImplementedError

    def activity(self, store: Store) -> list[tuple[str, uuid.UUID, str]]:
        """Connection id, event id and event type, in the order written."""
        raise NotImplementedError

    def redriven(self, store: Store) -> list[Redriven]:
        """Every dead letter, by id."""
        raise NotImplementedError

    def redrives(self, store: Store) -> list[tuple[int, str, datetime]]:
        """Dead letter id, who asked, when: the redrive outbox in the order written."""
        raise NotImplementedError

    # -- processed events

    def test_claim_returns_only_ids_never_seen(self, store: Store) -> None:
        a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with store.unit_of_work() as uow:
            assert uow.processed.claim([]) == set()
            assert uow.processed.claim([a, b, a]) == {a, b}
            assert uow.processed.claim([b]) == set()
        with store.unit_of_work() as uow:
            assert uow.processed.claim([a, c]) == {c}
        with store.unit_of_work() as uow:
            assert uow.processed.claim([a, b, c]) == set()

    # -- connections

    def test_an_unknown_connection_loads_new(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            loaded = uow.connections.load({"never-1": {"s-1"}, "never-2": ()})
        assert set(loaded) == {"never-1", "never-2"}
        for cid, connection in loaded.items():
            assert connection == Connection(connection_id=cid)

    def test_save_then_load_gives_back_every_field(self, store: Store) -> None:
        saved = [in_progress("c-full"), timed_out("c-timeout"), deleted("c-deleted")]
        assert saved[0].completed_substages and saved[0].holds_credentials
        assert saved[1].timed_out_from is Status.LOADING and saved[2].deleted_at is not None
        assert len(saved[0].producer_marks) == 3
        with store.unit_of_work() as uow:
            assert uow.connections.save(saved, {}) == {}
        with store.unit_of_work() as uow:
            loaded = uow.connections.load({c.connection_id: () for c in saved})
        for c in saved:
            back = loaded[c.connection_id]
            assert back is not c
            assert stored(back) == stored(c), c.connection_id
            assert back.loaded_version == c.version > 0
            assert (back.applied, back.refusals, back.parked) == ([], [], [])
            assert (back.newly_parked, back.unparked, back.new_sessions) == ([], [], [])
            assert self.history(store, c.connection_id) == [
                replace(t, attributes={}) for t in c.transitions
            ]
        assert self.outbox(store) == [
            (t.connection_id, t.sequence) for c in saved for t in c.transitions
        ]
        assert self.activity(store) == [
            ("c-full", a.event.event_id, "ACCOUNTS_SYNCED") for a in saved[0].activities
        ]
        assert saved[0].activities, "the round trip covers an activity"

    def test_what_is_loaded_is_a_copy_of_what_is_stored(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            first = uow.connections.load({"c-1": ()})["c-1"]
            applied(first, event(E.AUTHORIZATION_STARTED, "c-1"))
            uow.connections.save([first], {})
        # The aggregate goes on deciding; only what was saved is stored.
        applied(first, event(E.AUTHORIZATION_SUCCEEDED, "c-1"))
        with store.unit_of_work() as uow:
            again = uow.connections.load({"c-1": ()})["c-1"]
            again.producer_marks.clear()
            again.status = Status.DISCONNECTED
        with store.unit_of_work() as uow:
            third = uow.connections.load({"c-1": ()})["c-1"]
        assert (third.status, third.version) == (Status.AUTHORIZATION, 1)
        assert len(third.producer_marks) == 1

    def test_parked_events_come_back_and_are_released_with_their_origins(
        self, store: Store
    ) -> None:
        loading = event(E.LOADING_STARTED, producer="pipeline")
        completed = event(E.LOADING_COMPLETED, producer="pipeline")
        with store.unit_of_work() as uow:
            c = uow.connections.load({"conn-1": {"s-1"}})["conn-1"]
            assert c.accept(loading, NOW, POLICY) is Outcome.PARKED
            assert c.accept(completed, NOW, POLICY) is Outcome.PARKED
            assert uow.connections.save([c], {loading.event_id: origin(41)}) == {}
        with store.unit_of_work() as uow:
            c = uow.connections.load({"conn-1": {"s-1"}})["conn-1"]
            assert c.parked == [ParkedEvent(loading, NOW), ParkedEvent(completed, NOW)]
            applied(c, event(E.AUTHORIZATION_STARTED), event(E.AUTHORIZATION_SUCCEEDED))
            assert c.status is Status.LOADED
            assert set(c.unparked) == {loading.event_id, completed.event_id}
            released = uow.connections.save([c], {})
        assert released == {loading.event_id: origin(41)}
        with store.unit_of_work() as uow:
            c = uow.connections.load({"conn-1": ()})["conn-1"]
        assert (c.parked, c.status, c.version) == ([], Status.LOADED, 4)

    def test_load_names_the_sessions_a_connection_left_among_those_asked(
        self, store: Store
    ) -> None:
        c = applied(
            Connection(connection_id="c-1"),
            event(E.AUTHORIZATION_STARTED, "c-1", "s-1"),
            event(E.AUTHORIZATION_SUCCEEDED, "c-1", "s-1"),
            event(E.AUTHORIZATION_STARTED, "c-1", "s-2"),
        )
        older = event(E.AUTHORIZATION_STARTED, "c-1", "s-0", at=T0 - timedelta(days=1))
        assert c.accept(older, NOW, POLICY) is Outcome.REFUSED
        assert [s.session_id for s in c.new_sessions] == ["s-1", "s-2", "s-0"]
        with store.unit_of_work() as uow:
            uow.connections.save([c], {})
        with store.unit_of_work() as uow:
            asked = uow.connections.load({"c-1": {"s-0", "s-1", "s-2", "s-9"}})["c-1"]
            only_unknown = uow.connections.load({"c-1": {"s-9"}})["c-1"]
        assert asked.session_id == "s-2"
        assert asked.left_sessions == {"s-0", "s-1"}
        assert only_unknown.left_sessions == set()

    def test_a_stale_version_is_a_concurrent_update_and_keeps_nothing(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            uow.connections.save(
                [applied(Connection("c-1"), event(E.AUTHORIZATION_STARTED, "c-1"))], {}
            )
        with store.unit_of_work() as uow:
            stale = uow.connections.load({"c-1": ()})["c-1"]
        with store.unit_of_work() as uow:
            winner = uow.connections.load({"c-1": ()})["c-1"]
            applied(winner, event(E.AUTHORIZATION_SUCCEEDED, "c-1"))
            uow.connections.save([winner], {})
        claimed = uuid.uuid4()
        with pytest.raises(ConcurrentUpdate), store.unit_of_work() as uow:
            assert uow.processed.claim([claimed]) == {claimed}
            applied(stale, event(E.DISCONNECTED, "c-1", "admin-1", producer="admin"))
            uow.connections.save([stale], {})
            pytest.fail("save wrote over another writer")  # save itself must refuse
        with store.unit_of_work() as uow:
            assert uow.processed.claim([claimed]) == {claimed}
            now = uow.connections.load({"c-1": ()})["c-1"]
        assert (now.status, now.version) == (Status.AUTHORIZED, 2)
        assert [t.to_status for t in self.history(store, "c-1")] == [
            Status.AUTHORIZATION,
            Status.AUTHORIZED,
        ]

    def test_a_connection_created_twice_is_a_concurrent_update(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            first, second = (uow.connections.load({"c-new": ()})["c-new"] for _ in "ab")
        applied(first, event(E.AUTHORIZATION_STARTED, "c-new"))
        applied(second, event(E.AUTHORIZATION_STARTED, "c-new", "s-2"))
        with store.unit_of_work() as uow:
            uow.connections.save([first], {})
        with pytest.raises(ConcurrentUpdate), store.unit_of_work() as uow:
            uow.connections.save([second], {})
            pytest.fail("save wrote over another writer")  # save itself must refuse
        assert [t.session_id for t in self.history(store, "c-new")] == ["s-1"]

    def test_a_parked_event_released_twice_is_a_concurrent_update(self, store: Store) -> None:
        waiting = event(E.LOADING_STARTED)
        with store.unit_of_work() as uow:
            c = uow.connections.load({"conn-1": ()})["conn-1"]
            assert c.accept(waiting, NOW, POLICY) is Outcome.PARKED
            uow.connections.save([c], {waiting.event_id: origin(7)})
        with store.unit_of_work() as uow:
            first, second = (uow.connections.load({"conn-1": ()})["conn-1"] for _ in "ab")
        later = NOW + POLICY.park_window + timedelta(seconds=1)
        for c in (first, second):
            c.expire_parked(later, POLICY)
            assert c.unparked == [waiting.event_id] and not c.transitions
        with store.unit_of_work() as uow:
            assert uow.connections.save([first], {}) == {waiting.event_id: origin(7)}
        with pytest.raises(ConcurrentUpdate), store.unit_of_work() as uow:
            uow.connections.save([second], {})
            pytest.fail("save wrote over another writer")  # save itself must refuse

    def test_nothing_is_kept_when_the_block_raises(self, store: Store) -> None:
        claimed = uuid.uuid4()
        c = applied(Connection("c-1"), event(E.AUTHORIZATION_STARTED, "c-1"))
        view = ConnectionView("c-1", "facebook_ads", Status.AUTHORIZATION, NOW)
        refusal = Refusal(event(E.LOADING_COMPLETED, "c-1"), RefusalReason.STALE, "old", None)
        with pytest.raises(RuntimeError, match="the batch failed"), store.unit_of_work() as uow:
            assert uow.processed.claim([claimed]) == {claimed}
            uow.connections.save([c], {})
            uow.views.save([view])
            uow.dead_letters.add([refusal], {}, [])
            assert uow.connections.load({"c-1": ()})["c-1"].version == 1, "reads its writes"
            assert set(uow.views.load(["c-1"])) == {"c-1"}, "reads its writes"
            raise RuntimeError("the batch failed")
        with store.unit_of_work() as uow:
            assert uow.processed.claim([claimed]) == {claimed}
            assert uow.connections.load({"c-1": ()})["c-1"] == Connection("c-1")
            assert uow.views.load(["c-1"]) == {}
        assert self.dead_letters(store) == []
        assert self.history(store, "c-1") == [] and self.outbox(store) == []

    # -- the sweeper's locks

    def _connections_at(self, store: Store) -> None:
        """c-loading in Loading for 7 h, c-auth in Authorization for 16 min, c-recent for
        14 min, c-synced Synced (never times out) for 30 days."""

        def status_since(cid: str, kinds: list[EventType], ago: timedelta) -> Connection:
            return applied(Connection(cid), *(event(k, cid) for k in kinds), now=NOW - ago)

        a = [E.AUTHORIZATION_STARTED]
        flow = [*a, E.AUTHORIZATION_SUCCEEDED, E.LOADING_STARTED]
        synced = applied(
            Connection("c-synced"), *happy_session("c-synced"), now=NOW - timedelta(days=30)
        )
        assert synced.status is Status.SYNCED
        with store.unit_of_work() as uow:
            uow.connections.save(
                [
                    status_since("c-auth", a, timedelta(minutes=16)),
                    status_since("c-recent", a, timedelta(minutes=14)),
                    status_since("c-loading", flow, timedelta(hours=7)),
                    synced,
                ],
                {},
            )

    def test_lock_due_finds_statuses_past_their_timeout_oldest_first(self, store: Store) -> None:
        self._connections_at(store)
        with store.unit_of_work() as uow:
            due = uow.connections.lock_due(NOW, POLICY, 10)
            assert list(due) == ["c-loading", "c-auth"]
            assert due["c-auth"].status is Status.AUTHORIZATION
            assert due["c-auth"].loaded_version == 1
            assert due["c-loading"].due_timeout(NOW, POLICY) is not None
        with store.unit_of_work() as uow:
            assert list(uow.connections.lock_due(NOW, POLICY, 1)) == ["c-loading"]
        with store.unit_of_work() as uow:
            assert list(uow.connections.lock_due(NOW - timedelta(minutes=2), POLICY, 10)) == [
                "c-loading"
            ]

    def test_lock_due_skips_connections_another_unit_of_work_holds(self, store: Store) -> None:
        self._connections_at(store)
        with store.unit_of_work() as holder:
            holder.connections.load({"c-auth": ()})
            with store.unit_of_work() as sweeper:
                assert list(sweeper.connections.lock_due(NOW, POLICY, 10)) == ["c-loading"]
        with store.unit_of_work() as sweeper:
            assert list(sweeper.connections.lock_due(NOW, POLICY, 10)) == ["c-loading", "c-auth"]

    def test_lock_expired_parked_finds_connections_with_an_event_parked_too_long(
        self, store: Store
    ) -> None:
        with store.unit_of_work() as uow:
            parked = []
            for cid, at in (("p-new", NOW + timedelta(seconds=30)), ("p-old", NOW)):
                c = uow.connections.load({cid: ()})[cid]
                assert c.accept(event(E.LOADING_STARTED, cid), at, POLICY) is Outcome.PARKED
                parked.append(c)
            uow.connections.save(parked, {})
        with store.unit_of_work() as uow:
            assert uow.connections.lock_expired_parked(NOW, 10) == {}
            found = uow.connections.lock_expired_parked(NOW + timedelta(seconds=10), 10)
            assert list(found) == ["p-old"]
            assert [p.event.type for p in found["p-old"].parked] == [E.LOADING_STARTED]
            assert found["p-old"].status is None
        late = NOW + timedelta(seconds=31)
        with store.unit_of_work() as uow:
            assert list(uow.connections.lock_expired_parked(late, 1)) == ["p-old"]
        with store.unit_of_work() as holder:
            holder.connections.load({"p-old": ()})
            with store.unit_of_work() as sweeper:
                assert list(sweeper.connections.lock_expired_parked(late, 10)) == ["p-new"]
        with store.unit_of_work() as uow:
            assert list(uow.connections.lock_expired_parked(late, 10)) == ["p-old", "p-new"]

    # -- views

    def test_views_round_trip_with_their_accounts_and_credentials(self, store: Store) -> None:
        view = ConnectionView(
            "v-1",
            "facebook_ads",
            Status.SYNCED,
            T0,
            business_account="Acme",
            business_account_id="act-9",
            credentials_valid=True,
            accounts_state=AccountsState.READY,
            last_authorized_at=T0 + timedelta(minutes=1),
            last_synced_at=T0 + timedelta(minutes=2),
            reauthorization_failed_at=T0 + timedelta(minutes=3),
            reauthorization_error="Re-authorization failed",
            status_error="Quota exceeded",
            status_failure_class="rate_limit",
            source_sync=RunState(
                RunOutcome.ERROR,
                T0 + timedelta(minutes=4),
                T0 + timedelta(minutes=2),
                T0 + timedelta(minutes=5),
                "Quota exceeded",
            ),
            data_refresh=RunState(RunOutcome.SUCCESS, T0, succeeded_at=T0 + timedelta(minutes=1)),
            accounts={
                "b": AccountRow("b", "Second", "active", T0, T0 + timedelta(minutes=2)),
                "a": AccountRow("a", "First", "paused", T0),
            },
            credentials=[
                CredentialRow("cred-2", T0 + timedelta(minutes=5)),
                CredentialRow("cred-1", T0),
            ],
            accounts_changed=True,
            credentials_changed=True,
        )
        with store.unit_of_work() as uow:
            assert uow.views.load(["v-1"]) == {}
            uow.views.save([view])
        with store.unit_of_work() as uow:
            back = uow.views.load(["v-1", "v-unknown"])
        assert list(back) == ["v-1"]
        loaded = back["v-1"]
        assert loaded is not view
        assert loaded == replace(
            view,
            credentials=view.credentials[::-1],
            accounts_changed=False,
            credentials_changed=False,
        )
        assert list(loaded.accounts) == ["a", "b"], "accounts by id"
        assert [c.credential_id for c in loaded.credentials] == ["cred-1", "cred-2"]
        assert loaded.main_credential == "cred-2" and loaded.active_accounts == 1
        assert loaded.source_sync is not view.source_sync, "a copy, not the saved state"

        # Children are rewritten only when marked changed; created_at is the first one.
        loaded.status, loaded.created_at = Status.DISCONNECTED, T0 + timedelta(days=1)
        loaded.accounts["a"].status = "active"
        loaded.credentials.append(CredentialRow("cred-3", T0 + timedelta(minutes=9)))
        loaded.credentials_changed = True
        with store.unit_of_work() as uow:
            uow.views.save([loaded])
        with store.unit_of_work() as uow:
            again = uow.views.load(["v-1"])["v-1"]
        assert (again.status, again.created_at) == (Status.DISCONNECTED, T0)
        assert again.accounts["a"].status == "paused"
        assert [c.credential_id for c in again.credentials] == ["cred-1", "cred-2", "cred-3"]

    # -- dead letters

    def test_dead_letters_keep_refusals_with_their_origin_and_rejected_messages(
        self, store: Store
    ) -> None:
        stale, illegal, decoded = (
            event(k) for k in (E.LOADING_COMPLETED, E.SYNC_COMPLETED, E.DISCONNECTED)
        )
        refusals = [
            Refusal(stale, RefusalReason.STALE, "tests already reported it", Status.SYNCED),
            Refusal(illegal, RefusalReason.ILLEGAL_TRANSITION, "not from a new one", None),
        ]
        rejected = [
            RejectedMessage("undecodable", "not Avro", origin(1)),
            RejectedMessage("wrong_topic", "a pipeline event on auth", origin(2), decoded),
        ]
        with store.unit_of_work() as uow:
            uow.dead_letters.add([], {}, [])
            uow.dead_letters.add(refusals, {stale.event_id: origin(0)}, rejected)
        assert self.dead_letters(store) == [
            (
                "stale",
                "tests already reported it",
                stale.event_id,
                "conn-1",
                "LOADING_COMPLETED",
                19,
                origin(0),
            ),
            (
                "illegal_transition",
                "not from a new one",
                illegal.event_id,
                "conn-1",
                "SYNC_COMPLETED",
                None,
                None,
            ),
            ("undecodable", "not Avro", None, None, None, None, origin(1)),
            (
                "wrong_topic",
                "a pipeline event on auth",
                decoded.event_id,
                "conn-1",
                "DISCONNECTED",
                None,
                origin(2),
            ),
        ]

    def test_dead_letters_give_back_their_messages_and_queue_redrives(self, store: Store) -> None:
        stale, raised = event(E.LOADING_COMPLETED, producer="pipeline"), event(E.SYNC_COMPLETED)
        refusals = [
            Refusal(stale, RefusalReason.STALE, "reported", Status.SYNCED),
            Refusal(raised, RefusalReason.PARKED_TOO_LONG, "waited", None),
        ]
        rejected = [RejectedMessage("undecodable", "not Avro", origin(1))]
        with store.unit_of_work() as uow:
            uow.dead_letters.add(refusals, {stale.event_id: origin(0)}, rejected)
        with store.unit_of_work() as uow:
            assert uow.dead_letters.messages([3, 1, 2, 99], None) == {
                1: origin(0),
                2: None,
                3: origin(1),
            }
            uow.dead_letters.request_redrive([3, 1], "alice", NOW)
        with store.unit_of_work() as uow:
            assert uow.dead_letters.redriven([1, 2, 3, 99]) == {1: stale.event_id, 3: None}
            uow.dead_letters.request_redrive([3], "bob", NOW + timedelta(minutes=1))
        with pytest.raises(RuntimeError), store.unit_of_work() as uow:
            uow.dead_letters.request_redrive([2], "carol", NOW)
            raise RuntimeError("rolled back")
        with store.unit_of_work() as uow:
            assert uow.dead_letters.redriven([2]) == {}, "the asking was rolled back"
        assert self.redrives(store) == [
            (3, "alice", NOW),
            (1, "alice", NOW),
            (3, "bob", NOW + timedelta(minutes=1)),
        ]
        assert self.redriven(store) == [
            (1, "pipeline", "alice", NOW, 1),
            (2, "tests", None, None, 0),
            (3, None, "bob", NOW + timedelta(minutes=1), 2),
        ]

    def test_a_dead_letter_is_in_its_stored_connections_workspace(self, store: Store) -> None:
        """What triage may read within a scope: a dead letter of a connection of that
        workspace; one of a connection never stored (or of no connection) is in none."""
        acme = applied(
            Connection("c-acme"), event(E.AUTHORIZATION_STARTED, "c-acme", workspace_id="acme")
        )
        plain = applied(Connection("c-plain"), event(E.AUTHORIZATION_STARTED, "c-plain"))
        assert (acme.workspace_id, plain.workspace_id) == ("acme", "default")
        refusals = [
            Refusal(event(E.SYNC_COMPLETED, "c-acme"), RefusalReason.ILLEGAL_TRANSITION, "x", None),
            Refusal(
                event(E.SYNC_COMPLETED, "c-plain"), RefusalReason.ILLEGAL_TRANSITION, "x", None
            ),
            Refusal(event(E.SYNC_COMPLETED, "c-never"), RefusalReason.PARKED_TOO_LONG, "x", None),
        ]
        with store.unit_of_work() as uow:
            uow.connections.save([acme, plain], {})
            uow.dead_letters.add(refusals, {}, [RejectedMessage("undecodable", "x", origin(1))])
        with store.unit_of_work() as uow:
            assert set(uow.dead_letters.messages([1, 2, 3, 4], None)) == {1, 2, 3, 4}
            assert set(uow.dead_letters.messages([1, 2, 3, 4], "acme")) == {1}
            assert set(uow.dead_letters.messages([1, 2, 3, 4], "default")) == {2}
            assert uow.dead_letters.messages([1, 2, 3, 4], "globex") == {}
