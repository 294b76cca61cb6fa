"""Workspaces in the domain and on the wire: a connection takes the workspace of its first
applied event and keeps it; an event naming another one is refused (`workspace_mismatch`),
also when it was parked first; an event naming none is never checked; the status records,
the view and the commands carry the connection's workspace."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from syncstatus.schemas.codec import SingleObjectCodec, earlier_versions
from syncstatus.schemas.messages import (
    CommandMessages,
    EventMessages,
    MessageRejected,
    StatusChangeMessages,
)
from syncstatus.service.engine import StatusEngine
from syncstatus.statemachine.commands import CommandType, IssuedCommand
from syncstatus.statemachine.connection import Connection, Outcome, Policy, RefusalReason
from syncstatus.statemachine.events import EventLimits, EventType, InvalidEvent
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import project
from syncstatus.statemachine.workspaces import DEFAULT_WORKSPACE, in_scope
from tests.helpers.factories import T0, event
from tests.helpers.fake_store import FakeStore

E = EventType
POLICY = Policy(park_window=timedelta(seconds=60))
NOW = T0 + timedelta(hours=1)


def accept(connection: Connection, *events, now=NOW) -> list[Outcome]:
    return [connection.accept(e, now, POLICY) for e in events]


def opened(workspace_id: str | None = "acme") -> Connection:
    connection = Connection("c1")
    assert (
        accept(
            connection,
            event(E.AUTHORIZATION_STARTED, "c1", workspace_id=workspace_id),
            event(E.AUTHORIZATION_SUCCEEDED, "c1", workspace_id=workspace_id),
        )
        == [Outcome.APPLIED] * 2
    )
    return connection


# --- the aggregate -------------------------------------------------------------------------


def test_a_new_connection_takes_the_workspace_of_its_first_event_and_records_carry_it():
    connection = opened("acme")
    assert connection.workspace_id == "acme"
    assert [t.workspace_id for t in connection.transitions] == ["acme", "acme"]
    view = project(None, connection.applied)
    assert view is not None and view.workspace_id == "acme"


def test_a_first_event_that_names_no_workspace_puts_the_connection_in_default():
    connection = opened(None)
    assert connection.workspace_id == DEFAULT_WORKSPACE == "default"
    assert {t.workspace_id for t in connection.transitions} == {"default"}
    assert accept(connection, event(E.LOADING_STARTED, "c1", workspace_id="default")) == [
        Outcome.APPLIED
    ]


def test_an_event_that_names_another_workspace_is_refused_and_changes_nothing():
    connection = opened("acme")
    before = (connection.status, connection.version, dict(connection.producer_marks))
    other = event(E.LOADING_STARTED, "c1", workspace_id="globex", producer="pipeline")
    assert accept(connection, other) == [Outcome.REFUSED]
    (refusal,) = connection.refusals
    assert refusal.reason is RefusalReason.WORKSPACE_MISMATCH
    assert refusal.reason.value == "workspace_mismatch"
    assert refusal.detail == ("the event names workspace globex; the connection belongs to acme")
    assert refusal.from_status is Status.AUTHORIZED
    assert (connection.status, connection.version, dict(connection.producer_marks)) == before
    # The same event in the connection's own workspace applies: the refusal marked nothing.
    assert accept(connection, event(E.LOADING_STARTED, "c1", workspace_id="acme")) == [
        Outcome.APPLIED
    ]


def test_the_mismatch_is_checked_before_the_session_rules_so_it_touches_no_session():
    connection = opened("acme")
    older_opener = event(
        E.AUTHORIZATION_STARTED, "c1", "s-old", at=T0 - timedelta(days=1), workspace_id="globex"
    )
    assert accept(connection, older_opener) == [Outcome.REFUSED]
    assert connection.refusals[0].reason is RefusalReason.WORKSPACE_MISMATCH
    assert "s-old" not in connection.left_sessions
    assert all(s.session_id != "s-old" for s in connection.new_sessions)


def test_an_event_that_names_no_workspace_is_never_a_mismatch():
    connection = opened("acme")
    assert (
        accept(
            connection,
            event(E.LOADING_STARTED, "c1"),
            event(E.LOADING_COMPLETED, "c1", workspace_id="acme"),
            event(E.DEAUTHORIZED, "c1"),
        )
        == [Outcome.APPLIED] * 3
    )
    assert connection.refusals == []
    assert connection.workspace_id == "acme"


def test_a_parked_event_of_another_workspace_is_refused_when_released():
    connection = Connection("c1")
    early = event(E.LOADING_STARTED, "c1", workspace_id="globex", producer="pipeline")
    early_own = event(E.LOADING_STARTED, "c1", workspace_id="acme", producer="pipeline")
    assert accept(connection, early, early_own) == [Outcome.PARKED, Outcome.PARKED]
    assert connection.workspace_id is None, "no event applied yet: no workspace"
    assert (
        accept(
            connection,
            event(E.AUTHORIZATION_STARTED, "c1", workspace_id="acme"),
            event(E.AUTHORIZATION_SUCCEEDED, "c1"),
        )
        == [Outcome.APPLIED] * 2
    )
    assert connection.workspace_id == "acme"
    (refusal,) = connection.refusals
    assert (refusal.event.event_id, refusal.reason) == (
        early.event_id,
        RefusalReason.WORKSPACE_MISMATCH,
    )
    assert connection.parked == connection.newly_parked == []
    assert connection.status is Status.LOADING, "the own-workspace event applied"
    assert connection.transitions[-1].event_id == early_own.event_id


def test_a_parked_event_of_the_connections_workspace_is_released_and_applied():
    connection = Connection("c1")
    early = event(E.LOADING_STARTED, "c1", workspace_id="acme", producer="pipeline")
    assert accept(connection, early) == [Outcome.PARKED]
    assert (
        accept(
            connection,
            event(E.AUTHORIZATION_STARTED, "c1", workspace_id="acme"),
            event(E.AUTHORIZATION_SUCCEEDED, "c1", workspace_id="acme"),
        )
        == [Outcome.APPLIED] * 2
    )
    assert connection.status is Status.LOADING
    assert connection.refusals == []


def test_a_parked_event_of_another_workspace_waits_no_longer_than_any_other():
    """Until the connection's first event it cannot be told apart: it parks, and expires as
    parked_too_long if no opener ever comes."""
    connection = Connection("c1")
    assert accept(connection, event(E.LOADING_STARTED, "c1", workspace_id="globex")) == [
        Outcome.PARKED
    ]
    connection.expire_parked(NOW + timedelta(minutes=5), POLICY)
    assert connection.refusals[0].reason is RefusalReason.PARKED_TOO_LONG


def test_an_existing_connection_refuses_another_workspaces_event_instead_of_parking_it():
    connection = opened("acme")
    next_session = event(E.LOADING_STARTED, "c1", "s-2", workspace_id="globex")
    assert accept(connection, next_session) == [Outcome.REFUSED]
    assert connection.parked == []


def test_a_deleted_connection_says_deleted_before_it_says_mismatch():
    connection = opened("acme")
    accept(connection, connection.deletion(uuid.uuid4(), NOW))
    assert accept(connection, event(E.LOADING_STARTED, "c1", workspace_id="globex")) == [
        Outcome.REFUSED
    ]
    assert connection.refusals[-1].reason is RefusalReason.CONNECTION_DELETED


def test_the_services_own_events_are_in_the_connections_workspace():
    connection = Connection("c1")
    accept(connection, event(E.AUTHORIZATION_STARTED, "c1", workspace_id="acme"))
    timeout = connection.due_timeout(NOW + timedelta(hours=1), POLICY)
    assert timeout is not None and timeout.workspace_id == "acme"
    assert accept(connection, timeout, now=NOW + timedelta(hours=1)) == [Outcome.APPLIED]
    deletion = connection.deletion(uuid.uuid4(), NOW + timedelta(hours=2))
    assert deletion.workspace_id == "acme"
    assert accept(connection, deletion, now=NOW + timedelta(hours=2)) == [Outcome.APPLIED]
    assert {t.workspace_id for t in connection.transitions} == {"acme"}


def test_the_engine_dead_letters_a_mismatch_like_any_refusal():
    store = FakeStore()
    engine = StatusEngine(store, POLICY, clock=lambda: NOW)
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1", workspace_id="acme"))
    assert engine.apply_event(event(E.AUTHORIZATION_SUCCEEDED, "c1", workspace_id="globex")) is (
        Outcome.REFUSED
    )
    (letter,) = store.dead_letters()
    assert (letter.reason, letter.connection_id, letter.from_status) == (
        "workspace_mismatch",
        "c1",
        int(Status.AUTHORIZATION),
    )
    assert letter.event is not None and letter.event["workspace_id"] == "globex"
    row = store.connection("c1")
    assert row is not None and (row.workspace_id, row.status) == ("acme", Status.AUTHORIZATION)
    assert {t.workspace_id for t in store.history("c1")} == {"acme"}


def test_scopes():
    assert in_scope("acme", None) and in_scope("acme", "acme")
    assert not in_scope("acme", "globex")


# --- the event's rules and the wire ---------------------------------------------------------


def test_an_empty_workspace_is_no_event():
    with pytest.raises(InvalidEvent, match="workspace_id is empty"):
        event(E.LOADING_STARTED, workspace_id="")


@pytest.mark.parametrize(
    ("workspace_id", "says"),
    [
        ("a/b", "does not match the id rule"),
        ("..", "does not match the id rule"),
        ("bad\x01", "does not match the id rule"),
        ("w" * 257, "257 characters long; at most 256"),
    ],
)
def test_a_workspace_id_follows_the_connection_id_rule(workspace_id, says):
    messages = EventMessages(EventLimits())
    data = messages.encode(event(E.LOADING_STARTED, workspace_id=workspace_id))
    with pytest.raises(MessageRejected, match=says) as refused:
        messages.decode(data)
    assert refused.value.reason is RefusalReason.INVALID_EVENT


def test_events_round_trip_with_and_without_a_workspace():
    messages = EventMessages()
    for workspace_id in ("acme", None):
        sent = event(E.LOADING_STARTED, workspace_id=workspace_id)
        assert messages.decode(messages.encode(sent)) == sent
        assert type(sent).from_record(sent.to_record()) == sent


def test_a_v4_producers_event_names_no_workspace():
    (v4,) = [s for s in earlier_versions("SessionEvent") if s["version"] == 4]
    sent = event(E.LOADING_STARTED)
    record = sent.to_record()
    del record["workspace_id"]
    data = SingleObjectCodec(v4).encode(record)
    decoded = EventMessages().decode(data)
    assert decoded.workspace_id is None and decoded.event_id == sent.event_id


def test_a_stored_record_from_before_workspaces_names_none():
    record = event(E.LOADING_STARTED).to_record()
    del record["workspace_id"]
    assert type(event(E.LOADING_STARTED)).from_record(record).workspace_id is None


def test_status_records_carry_the_workspace_and_old_ones_read_as_default():
    connection = opened("acme")
    messages = StatusChangeMessages()
    record = messages.decode(messages.encode(connection.transitions[0]))
    assert record["workspace_id"] == "acme"
    (v2,) = [s for s in earlier_versions("StatusChanged") if s["version"] == 2]
    old = dict(record)
    del old["workspace_id"]
    assert messages.decode(SingleObjectCodec(v2).encode(old))["workspace_id"] == "default"


def test_commands_carry_the_workspace_and_old_ones_read_as_default():
    command = IssuedCommand(
        uuid.uuid4(), "c1", "facebook_ads", CommandType.RECONNECT, {}, "alice", NOW, "acme"
    )
    messages = CommandMessages()
    record = messages.decode(messages.encode(command))
    assert record["workspace_id"] == "acme"
    (v1,) = [s for s in earlier_versions("ConnectionCommand") if s["version"] == 1]
    old = dict(record)
    del old["workspace_id"]
    assert messages.decode(SingleObjectCodec(v1).encode(old))["workspace_id"] == "default"
