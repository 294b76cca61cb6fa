"""Property: once a connection belongs to a workspace, events naming another change nothing,
however they arrive (early or late, retried with new ids, of any session, parked or not, in
batches of any size). The connection ends where the independent replay of its true events
ends, keeps its workspace, and no status change is caused by a foreign event: each is refused
as `workspace_mismatch`, when it arrives or when its session lets it out of the parking."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from syncstatus.statemachine.connection import Connection
from syncstatus.statemachine.events import SessionEvent
from syncstatus.statemachine.records import RefusalReason
from tests.helpers.examples import examples
from tests.helpers.oracle import expected
from tests.helpers.producers import Story, redelivered, story
from tests.unit.test_realistic_producers import (
    DEDUP,
    NOW,
    POLICY,
    TOLERANCE,
    assert_matches,
    replay,
)

OWN, FOREIGN = "acme", "globex"


def owned(told: Story) -> Story:
    """The story with every event naming the connection's workspace, as its producers would."""
    copies: dict[int, SessionEvent] = {}

    def own(events: list[SessionEvent]) -> list[SessionEvent]:
        return [copies.setdefault(id(e), replace(e, workspace_id=OWN)) for e in events]

    return replace(
        told,
        truth=own(told.truth),
        arrivals=own(told.arrivals),
        phases=[own(phase) for phase in told.phases],
    )


def first_owning(arrivals: list[SessionEvent]) -> int:
    """The index of the arrival that gives the connection its workspace: from there on, the
    connection has one to defend."""
    connection = Connection(arrivals[0].connection_id)
    for index, event in enumerate(arrivals):
        connection.accept(event, NOW, POLICY)
        if connection.workspace_id is not None:
            return index
    raise AssertionError("no arrival gave the connection a workspace")


def with_foreign(rng: random.Random, arrivals: list[SessionEvent], count: int):
    """`count` copies of true events under new ids naming another workspace, each slipped in at
    a random place after the connection has its workspace."""
    mixed, start = list(arrivals), first_owning(arrivals) + 1
    foreign = []
    for _ in range(count):
        copy = replace(rng.choice(arrivals), event_id=uuid.uuid4(), workspace_id=FOREIGN)
        mixed.insert(rng.randint(start, len(mixed)), copy)
        foreign.append(copy)
    return mixed, {e.event_id for e in foreign}


@settings(max_examples=examples(300), deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.booleans(),
    st.integers(1, 8),
)
def test_events_naming_another_workspace_change_nothing(rng, cuts, as_kafka_might, count):
    told = owned(story(rng, "c-1", TOLERANCE, DEDUP))
    arrivals, foreign = with_foreign(
        rng, redelivered(rng, told) if as_kafka_might else told.arrivals, count
    )
    connection, view, history = replay(arrivals, cuts)
    assert connection.workspace_id == OWN
    assert_matches(connection, view, expected(told.truth, DEDUP))
    assert not foreign & {t.event_id for t in history}
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))
    still_parked = {p.event.event_id for p in connection.parked}
    refused = {r.event.event_id: r.reason for r in connection.refusals}
    assert foreign <= still_parked | refused.keys()
    assert {i for i, why in refused.items() if why is RefusalReason.WORKSPACE_MISMATCH} <= foreign


def test_the_foreign_events_are_mostly_refused_for_their_workspace():
    """Guard the guard: the property's foreign events reach the workspace check, not another
    refusal first."""
    refused, total = 0, 0
    for seed in range(200):
        rng = random.Random(seed)
        told = owned(story(rng, f"c-{seed}", TOLERANCE, DEDUP))
        arrivals, foreign = with_foreign(rng, told.arrivals, 4)
        connection, _, _ = replay(arrivals, [])
        total += len(foreign)
        refused += sum(
            r.reason is RefusalReason.WORKSPACE_MISMATCH and r.event.event_id in foreign
            for r in connection.refusals
        )
    assert refused > total * 0.8
