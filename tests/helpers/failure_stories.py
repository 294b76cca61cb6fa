"""The realistic producers of `tests/helpers/producers.py`, whose failures now say what kind of
failure they were, and whose connection may be left in any stage for the sweeper to time out.

A `FailureStory` is a `producers.Story` (sessions with failures and retries, aggregators,
revocations, account syncs; topics interleaved, retries with new ids, duplicates, late events of
earlier sessions, clocks off by up to the tolerance), then a tail:

- one more session, cut off after a random event (most often where the status can time out:
  a stage, Authorization, Authorized), so the sweeper has something to time out;
- sometimes followed by the app revoking access, or by a new session (re-authorization or a
  new sync) that the cut-off session's last pipeline event may arrive after, and pipeline
  events of the cut-off session that happened just after it opened;
- retries and duplicates of the tail, and late retries of any earlier event, scattered over it.

Every failure-bearing event (a `*_FAILED`, an abandoned login, a revocation, a failed account
sync) gets, by its content, so that every retry of it says the same: a `failure` of a random
class (`credentials` more often than the others, and half of the failed account syncs), with or
without error text; or error text alone (the producers that predate failure classes); or
neither. A `credentials` failure of a session's event takes the credentials away, so a later
new sync from Error in Authorization (which needs working credentials) would make the true
story illegal: such a failure is given another class instead. One on a failed account sync
takes nothing (docs/contract.md), so it is always kept: it must not change the credentials.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

from statemachine.exceptions import TransitionNotAllowed

from syncstatus.statemachine.events import EventType, Failure, FailureClass, SessionEvent
from tests.helpers.oracle import CREDENTIALS, Oracle
from tests.helpers.producers import (
    Story,
    _interleave,
    _session,
    _stragglers,
    _Writer,
    redelivered,
    story,
    topic_of,
)

E = EventType
FAILING = frozenset(
    {
        E.AUTHORIZATION_FAILED,
        E.AUTHORIZATION_TIMED_OUT,
        E.WEBHOOK_FAILED,
        E.LOADING_FAILED,
        E.DEDUPLICATION_FAILED,
        E.STRUCTURING_FAILED,
        E.PROCESSING_FAILED,
        E.DEAUTHORIZED,
        E.DISCONNECTED,
        E.ACCOUNTS_SYNC_FAILED,
    }
)
"""The events whose producers say something went wrong."""
CODES = (None, "401", "invalid_grant", "429", "E_SCOPE", "503")


def key_of(event: SessionEvent) -> tuple:
    """What a retry with a new id keeps of the event it repeats."""
    return (event.session_id, event.producer, event.type, event.substage, event.occurred_at)


@dataclass
class Decorator:
    """Gives every failure-bearing event its failure, the same for every copy of it."""

    rng: random.Random
    chosen: dict[tuple, tuple[str | None, Failure | None]] = field(default_factory=dict)

    def __call__(self, event: SessionEvent) -> SessionEvent:
        if event.type not in FAILING:
            return event
        key = key_of(event)
        if key not in self.chosen:
            self.chosen[key] = self._choose(event)
        error, failure = self.chosen[key]
        return replace(event, error=error, failure=failure)

    def _choose(self, event: SessionEvent) -> tuple[str | None, Failure | None]:
        if event.type is E.ACCOUNTS_SYNC_FAILED and self.rng.random() < 0.5:
            # rare in the stories, and the case the contract singles out: often `credentials`
            failure = Failure(FailureClass.CREDENTIALS, False, self.rng.choice(CODES))
            return (event.error if self.rng.random() < 0.7 else None), failure
        roll = self.rng.random()
        if roll < 0.3:
            return event.error, None  # error text alone: reads as unknown
        if roll < 0.36:
            return None, None
        classes = list(FailureClass)
        if self.rng.random() < 0.3:
            classes = [FailureClass.CREDENTIALS]
        failure = Failure(self.rng.choice(classes), self.rng.random() < 0.5, self.rng.choice(CODES))
        return (None if roll < 0.42 else event.error or "failed"), failure

    def declass(self, event: SessionEvent) -> None:
        """Give the failure of `event` (and of all its copies) a class other than credentials."""
        error, failure = self.chosen[key_of(event)]
        other = self.rng.choice([c for c in FailureClass if c is not FailureClass.CREDENTIALS])
        self.chosen[key_of(event)] = (error, replace(failure, failure_class=other))


@dataclass
class FailureStory:
    connection_id: str
    app: str
    truth: list[SessionEvent]
    arrivals: list[SessionEvent]
    sessions: list[str]
    ending: str = "none"
    """What followed the cut-off session: none, revoked, new session."""


def failure_story(
    rng: random.Random,
    connection_id: str,
    tolerance: timedelta,
    dedup_apps: frozenset[str],
) -> FailureStory:
    told = story(rng, connection_id, tolerance, dedup_apps)
    arrivals = redelivered(rng, told) if rng.random() < 0.5 else list(told.arrivals)
    decorate = Decorator(rng)
    truth = list(told.truth)
    _make_legal(truth, decorate, dedup_apps)
    tail = _Tail(rng, told, decorate, dedup_apps, tolerance)
    tail.run()
    truth += tail.truth
    arrivals += tail.arrivals
    _make_legal(truth, decorate, dedup_apps)
    return FailureStory(
        connection_id,
        told.app,
        [decorate(e) for e in truth],
        [decorate(e) for e in arrivals],
        told.sessions + tail.sessions,
        ending=tail.ending,
    )


def _make_legal(truth: list[SessionEvent], decorate: Decorator, dedup_apps) -> None:
    """Re-class the credentials failure that made the true story illegal, until none does
    (one of a session's event: an account sync's takes no credentials away)."""
    while True:
        oracle = Oracle(dedup_apps)
        for index, original in enumerate(truth):
            try:
                oracle.apply(decorate(original))
            except TransitionNotAllowed:
                culprit = next(
                    (
                        e
                        for e in reversed(truth[:index])
                        if e.type is not E.ACCOUNTS_SYNC_FAILED
                        and (d := decorate(e)).failure is not None
                        and d.failure.failure_class.value == CREDENTIALS
                    ),
                    None,
                )
                assert culprit is not None, f"the story is illegal at {original} by itself"
                decorate.declass(culprit)
                break
        else:
            return


class _Tail:
    """The last session, cut off, and what may follow it; delivered as the producers would."""

    def __init__(self, rng, told: Story, decorate: Decorator, dedup_apps, tolerance) -> None:
        self.rng, self.told, self.decorate = rng, told, decorate
        self.dedup_apps, self.tolerance = dedup_apps, tolerance
        self.dedup = told.app in dedup_apps
        last = max(e.occurred_at - told.skews[e.producer] for e in told.arrivals)
        self.writer = _Writer(rng, told.connection_id, told.app, told.skews, last)
        self.truth: list[SessionEvent] = []
        self.arrivals: list[SessionEvent] = []
        self.sessions: list[str] = []
        self.ending = "none"
        self._previous = [e for e in told.truth if e.session_id == told.sessions[-1]]

    def _oracle(self) -> Oracle:
        oracle = Oracle(self.dedup_apps)
        for e in self.told.truth + self.truth:
            oracle.apply(self.decorate(e))
        return oracle

    def _new_session(self) -> list[SessionEvent]:
        oracle = self._oracle()
        session = f"{self.told.connection_id}:s{len(self.told.sessions) + len(self.sessions)}"
        self.sessions.append(session)
        self.writer.now += self.tolerance * 4 + timedelta(minutes=self.rng.randint(1, 600))
        self.writer.events = []
        status = oracle.result.status
        _session(
            self.writer,
            session,
            status.name if status else None,
            bool(oracle.result.credentials_valid),
            self.dedup,
        )
        return self.writer.events

    def _cut(self, events: list[SessionEvent]) -> list[SessionEvent]:
        """Most often where the status can time out, else anywhere."""
        oracle = self._oracle()
        stuck = []
        for index, e in enumerate(events):
            oracle.apply(self.decorate(e))
            if oracle.timeout_due() is not None:
                stuck.append(index + 1)
        if stuck and self.rng.random() < 0.8:
            return events[: self.rng.choice(stuck)]
        return events[: self.rng.randint(1, len(events))]

    def run(self) -> None:
        cut = self._cut(self._new_session())
        segments = [cut]
        self.truth += cut
        roll = self.rng.random()
        if roll < 0.2:
            self.ending = "revoked"
            self.writer.events = []
            kind = self.rng.choice([E.DEAUTHORIZED, E.DISCONNECTED])
            named = cut[-1].session_id if self.rng.random() < 0.5 else f"{cut[-1].session_id}:x"
            self.writer.emit(kind, named, self.rng.choice(["auth", "admin"]), error="revoked")
            segments.append(self.writer.events)
            self.truth += self.writer.events
        elif roll < 0.45:
            self.ending = "new session"
            events = self._new_session()
            segments.append(events)
            self.truth += events
        self._deliver(segments)

    def _deliver(self, segments: list[list[SessionEvent]]) -> None:
        rng, previous = self.rng, self._previous
        held = None
        for number, events in enumerate(segments):
            opener_first = events[0].type is E.AUTHORIZATION_STARTED
            arrived = _interleave(rng, events, keep_first=opener_first)
            if opener_first and rng.random() < 0.4:
                arrived[1:1] = _stragglers(rng, previous, events[0], self.told.skews)
            if held is not None:
                arrived.insert(1, held)
                self.truth.remove(held)
                held = None
            self.arrivals += arrived
            last, following = events[-1], segments[number + 1 : number + 2]
            if (
                following
                and following[0][0].type is E.AUTHORIZATION_STARTED
                and topic_of(last) == "pipeline"
                and rng.random() < 0.3
            ):
                held = last  # arrives only after the next session opened: superseded
                self.arrivals.remove(last)
            if events[0].type.changes_status and not events[0].type.connection_wide:
                previous = events
        for original in list(self.truth):
            roll = rng.random()
            if roll < 0.08:
                again = replace(original, event_id=uuid.uuid4())
            elif roll < 0.12:
                again = original
            else:
                continue
            after = self.arrivals.index(original) + 1
            self.arrivals.insert(rng.randint(after, len(self.arrivals)), again)
        for old in rng.sample(self.told.truth, min(len(self.told.truth), rng.randint(0, 3))):
            late = replace(old, event_id=uuid.uuid4())
            self.arrivals.insert(rng.randint(1, len(self.arrivals)), late)
