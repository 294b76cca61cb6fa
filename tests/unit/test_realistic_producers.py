"""Property: however real producers deliver a connection's events (retries with new ids, late
events of earlier sessions, duplicates, topics interleaved, clocks off by up to the tolerance,
batches of any size), the aggregate ends where an independent replay of the truth ends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncstatus.statemachine.connection import Connection, Policy, Transition
from syncstatus.statemachine.view import ConnectionView, project
from tests.helpers.examples import examples
from tests.helpers.oracle import Expected, expected
from tests.helpers.producers import Story, redelivered, story

TOLERANCE = timedelta(minutes=5)
DEDUP = frozenset({"plaid"})
POLICY = Policy(deduplication_apps=DEDUP, clock_skew=TOLERANCE, park_window=timedelta(days=1))
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def replay(arrivals, cuts: list[int]) -> tuple[Connection, ConnectionView | None, list[Transition]]:
    """What the engine does, one unit of work per batch: each event id at most once, the view
    projected from what the batch applied."""
    connection, view, history, seen = Connection(arrivals[0].connection_id), None, [], set()
    bounds = sorted({0, len(arrivals), *(c % len(arrivals) for c in cuts)})
    for start, end in zip(bounds, bounds[1:], strict=False):
        connection.applied.clear()
        for event in arrivals[start:end]:
            if event.event_id not in seen:
                seen.add(event.event_id)
                connection.accept(event, NOW, POLICY)
        view = project(view, connection.applied)
        history += connection.transitions
    return connection, view, history


def assert_matches(connection: Connection, view: ConnectionView, want: Expected) -> None:
    assert connection.status is want.status
    assert connection.session_id == want.session_id
    assert connection.completed_substages == want.substages
    assert view.status is want.status
    assert view.credentials_valid == want.credentials_valid
    assert (view.last_authorized_at, view.last_synced_at) == (
        want.last_authorized_at,
        want.last_synced_at,
    )
    assert view.reauthorization_failed_at == want.reauthorization_failed_at
    assert view.accounts_state.value == want.accounts_state
    accounts = {
        a.account_id: (a.name, a.status, a.created_at, a.updated_at) for a in view.accounts.values()
    }
    assert accounts == want.accounts
    assert view.main_credential == want.main_credential


def assert_sessions_never_go_back(history: list[Transition], told: Story) -> None:
    """Sessions follow one another, and every status change of a session was caused by an event
    of that session (connection-wide events excepted: they act on the current one)."""
    order = [told.sessions.index(t.session_id) for t in history]
    assert order == sorted(order), "a status change of a left session after a newer one opened"
    cause = {e.event_id: e for e in told.arrivals}
    for t in history:
        if not t.event_type.connection_wide:
            assert cause[t.event_id].session_id == t.session_id, t


@settings(max_examples=examples(400), deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.booleans(),
)
def test_realistic_producers_never_rewrite_a_connections_story(rng, cuts, as_kafka_might):
    told = story(rng, "c-1", TOLERANCE, DEDUP)
    arrivals = redelivered(rng, told) if as_kafka_might else told.arrivals
    connection, view, history = replay(arrivals, cuts)
    assert_matches(connection, view, expected(told.truth, DEDUP))
    assert_sessions_never_go_back(history, told)
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))


@settings(max_examples=examples(150), deadline=None)
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, 10_000), max_size=12))
def test_batching_changes_nothing_at_all(rng, cuts):
    told = story(rng, "c-1", TOLERANCE, DEDUP)
    one_by_one = replay(told.arrivals, list(range(len(told.arrivals))))
    grouped = replay(told.arrivals, cuts)
    assert grouped[1] == one_by_one[1]
    assert grouped[2] == one_by_one[2]
    assert grouped[0].refusals == one_by_one[0].refusals


def test_the_generator_makes_what_the_property_claims():
    """Guard the guard: the stories contain each hazard often enough to matter."""
    stories = [story(random.Random(seed), f"c-{seed}", TOLERANCE, DEDUP) for seed in range(300)]
    arrivals = [e for s in stories for e in s.arrivals]
    truth_ids = {e.event_id for s in stories for e in s.truth}
    copies = [e for e in arrivals if e.event_id not in truth_ids]
    duplicates = len(arrivals) - len({e.event_id for e in arrivals})
    assert sum(len(s.sessions) > 1 for s in stories) > 150
    assert len(copies) > 200 and duplicates > 100
    assert sum(len(s.arrivals) > len(s.truth) for s in stories) > 200
