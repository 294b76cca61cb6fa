"""Realistic producers of one connection's events, for property tests against an oracle.

A `Story` is what really happened to a connection, in true order (`truth`), and what
syncstatus receives (`arrivals`):

- several sessions, each opened by an authorization or, after a sync, by a new sync; inside a
  session loading, deduplication, structuring and processing with failures and retries,
  aggregators through Waiting For Webhook, abandoned and failed re-authorizations;
- between sessions, account syncs and now and then the app revoking access or a disconnect,
  named by the current session or by a session id of their own;
- each topic delivers its events in order, the three topics interleaved at random within a
  session; the authorization of a later session arrives before the pipeline events it led to;
- retries with new event ids and replays of old events at any later point, exact duplicates,
  and the last event of a session delivered only after the next session opened (so it is
  superseded and left out of the truth);
- every producer's clock off by a random amount up to the skew tolerance.

Sessions lie further apart than twice the tolerance, as real syncs do (hours apart), so no
true order depends on comparing two clocks closer than that.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from syncstatus.statemachine.events import Account, EventType, SessionEvent, Substage

E = EventType
START = datetime(2026, 11, 1, tzinfo=UTC)
TOPIC = {"auth": "auth", "admin": "auth", "hooks": "webhooks"}
"""Each producer's topic; the pipeline's producers (loader, structurer, processor) share one."""
PIPELINE = ("loader", "structurer", "processor")
RESYNC_FROM = {"SYNCED", "LOADING_ERROR", "TIMED_OUT"}


def topic_of(event: SessionEvent) -> str:
    return TOPIC.get(event.producer, "pipeline")


@dataclass
class Story:
    connection_id: str
    app: str
    truth: list[SessionEvent] = field(default_factory=list)
    arrivals: list[SessionEvent] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    skews: dict[str, timedelta] = field(default_factory=dict)
    phases: list[list[SessionEvent]] = field(default_factory=list)
    """The arrivals cut where order across topics matters; within a phase any delivery that
    keeps each topic's order gives the same story."""


@dataclass
class _Writer:
    """Stamps and collects the events of one story segment."""

    rng: random.Random
    connection_id: str
    app: str
    skews: dict[str, timedelta]
    now: datetime
    events: list[SessionEvent] = field(default_factory=list)

    def emit(self, kind: EventType, session: str, producer: str, **fields) -> SessionEvent:
        self.now += timedelta(milliseconds=self.rng.randint(200, 20_000))
        event = SessionEvent(
            event_id=uuid.uuid4(),
            type=kind,
            connection_id=self.connection_id,
            session_id=session,
            app=self.app,
            occurred_at=_millis(self.now + self.skews[producer]),
            producer=producer,
            **fields,
        )
        self.events.append(event)
        return event


def story(
    rng: random.Random,
    connection_id: str,
    tolerance: timedelta,
    dedup_apps: frozenset[str] = frozenset({"plaid"}),
) -> Story:
    app = rng.choice(["facebook_ads", "plaid", "hubspot"])
    producers = ["auth", "admin", "hooks", *PIPELINE]
    skews = {
        p: timedelta(milliseconds=rng.randint(-1, 1) * rng.randint(0, _ms(tolerance)))
        for p in producers
    }
    writer = _Writer(rng, connection_id, app, skews, START)
    result = Story(connection_id, app, skews=skews)
    segments: list[tuple[list[SessionEvent], bool]] = []
    status, holds = None, False
    for index in range(rng.randint(1, 4)):
        session = f"{connection_id}:s{index}"
        writer.now += tolerance * 4 + timedelta(minutes=rng.randint(1, 600))
        writer.events = []
        status, holds = _session(writer, session, status, holds, app in dedup_apps)
        result.sessions.append(session)
        segments.append(
            (writer.events, index > 0 and writer.events[0].type is E.AUTHORIZATION_STARTED)
        )
        for extra in (_accounts, _revocation):
            writer.events = []
            changed = extra(writer, session)
            if writer.events:
                segments.append((writer.events, False))
                status = changed or status
                if changed:
                    holds = False
    _deliver(rng, result, segments)
    return result


def _session(w: _Writer, session: str, status, holds: bool, dedup: bool):
    """One session's events in true order; returns the status and credentials it leaves."""
    opener = _opener(w.rng, status, holds)
    if opener is E.AUTHORIZATION_STARTED:
        w.emit(opener, session, "auth")
        outcome = w.rng.choices(["ok", "failed", "abandoned"], [8, 1, 1])[0]
        if outcome != "ok":
            kind = E.AUTHORIZATION_FAILED if outcome == "failed" else E.AUTHORIZATION_TIMED_OUT
            w.emit(kind, session, "auth", error="not completed")
            return (
                "ERROR_IN_AUTHORIZATION" if outcome == "failed" else "AUTHORIZATION_TIMEDOUT"
            ), holds
        w.emit(
            E.AUTHORIZATION_SUCCEEDED,
            session,
            "auth",
            attributes={"credential_id": f"cred-{session}", "business_account": "Acme"},
        )
        opener = None
    return _pipeline(w, session, opener, dedup), True


def _opener(rng: random.Random, status, holds: bool) -> EventType:
    can_resync = status in RESYNC_FROM or (
        holds and status in ("ERROR_IN_AUTHORIZATION", "AUTHORIZATION_TIMEDOUT")
    )
    if can_resync and rng.random() < 0.6:
        return rng.choice([E.LOADING_STARTED, E.WEBHOOK_PENDING])
    return E.AUTHORIZATION_STARTED


def _pipeline(w: _Writer, session: str, opener, dedup: bool) -> str:
    first = opener or w.rng.choice([E.LOADING_STARTED, E.WEBHOOK_PENDING])
    for attempt in range(3):
        kind = first if attempt == 0 else w.rng.choice([E.LOADING_STARTED, E.WEBHOOK_PENDING])
        w.emit(kind, session, "loader")
        if kind is E.WEBHOOK_PENDING:
            if w.rng.random() < 0.2:
                w.emit(E.WEBHOOK_FAILED, session, "hooks", error="aggregator failed")
                if attempt == 2 or w.rng.random() < 0.3:
                    return "LOADING_ERROR"
                continue
            w.emit(E.WEBHOOK_RECEIVED, session, "hooks")
        if w.rng.random() < 0.2:
            w.emit(E.LOADING_FAILED, session, "loader", error="source answered 503")
            if attempt == 2 or w.rng.random() < 0.3:
                return "LOADING_ERROR"
            continue
        w.emit(E.LOADING_COMPLETED, session, "loader")
        break
    else:
        return "LOADING_ERROR"
    if dedup:
        for _ in range(2):
            w.emit(E.DEDUPLICATION_STARTED, session, "loader")
            if w.rng.random() < 0.8:
                break
            w.emit(E.DEDUPLICATION_FAILED, session, "loader", error="duplicates")
        else:
            return "DEDUPLICATION_ERROR"
    for _ in range(2):
        w.emit(E.STRUCTURING_STARTED, session, "structurer")
        if w.rng.random() < 0.85:
            w.emit(E.STRUCTURING_COMPLETED, session, "structurer")
            break
        w.emit(E.STRUCTURING_FAILED, session, "structurer", error="bad row")
    else:
        return "STRUCTURING_ERROR"
    for _ in range(2):
        w.emit(E.PROCESSING_STARTED, session, "processor")
        substages = w.rng.sample(list(Substage), len(Substage))
        if w.rng.random() < 0.15:
            done = w.rng.randint(0, 4)
            for s in substages[:done]:
                w.emit(E.PROCESSING_SUBSTAGE_COMPLETED, session, "processor", substage=s)
            w.emit(E.PROCESSING_FAILED, session, "processor", error="forecast failed")
            continue
        for s in substages:
            w.emit(E.PROCESSING_SUBSTAGE_COMPLETED, session, "processor", substage=s)
        w.emit(E.PROCESSING_COMPLETED, session, "processor")
        w.emit(E.SYNC_COMPLETED, session, "processor")
        return "SYNCED"
    return "PROCESSING_ERROR"


def _accounts(w: _Writer, session: str) -> None:
    if w.rng.random() < 0.5:
        return None
    named = session if w.rng.random() < 0.5 else f"{session}:accounts"
    w.emit(E.ACCOUNTS_SYNC_STARTED, named, "auth")
    if w.rng.random() < 0.15:
        w.emit(E.ACCOUNTS_SYNC_FAILED, named, "auth", error="quota")
        return None
    listed = tuple(
        Account(f"acc-{i}", f"Account {i}", w.rng.choice(["active", "active", "disabled"]))
        for i in w.rng.sample(range(5), w.rng.randint(0, 3))
    )
    w.emit(E.ACCOUNTS_SYNCED, named, "auth", accounts=listed)
    return None


def _revocation(w: _Writer, session: str) -> str | None:
    """Now and then the app revokes access or the connection is disconnected."""
    if w.rng.random() > 0.15:
        return None
    kind = w.rng.choice([E.DEAUTHORIZED, E.DISCONNECTED])
    named = session if w.rng.random() < 0.5 else f"{session}:revoked"
    w.emit(kind, named, w.rng.choice(["auth", "admin"]), error="access revoked")
    return "DEAUTHORIZED" if kind is E.DEAUTHORIZED else "DISCONNECTED"


def _deliver(rng: random.Random, result: Story, segments) -> None:
    """Interleave topics within each segment, hold some sessions' last event back until the
    next authorization arrived, let an abandoned session's pipeline run on after it, then
    scatter retries, replays and duplicates later on."""
    held: SessionEvent | None = None
    previous: list[SessionEvent] = []
    starts: list[SessionEvent] = []
    for events, authorized_first in segments:
        result.truth += events
        arrived = _interleave(rng, events, keep_first=authorized_first)
        if authorized_first and rng.random() < 0.3:
            arrived[1:1] = _stragglers(rng, previous, events[0], result.skews)
        if held is not None and authorized_first:
            arrived.insert(1, held)
            result.truth.remove(held)
        elif held is not None:
            arrived.insert(0, held)
        starts += arrived[: 2 if authorized_first or held is not None else 1]
        held = None
        result.arrivals += arrived
        if events[0].type.changes_status and not events[0].type.connection_wide:
            previous = events
        last = events[-1]
        if topic_of(last) == "pipeline" and rng.random() < 0.2:
            held = last
            result.arrivals.remove(last)
    if held is not None:
        result.arrivals.append(held)
        starts.append(held)
    for original in list(result.truth):
        roll = rng.random()
        if roll < 0.08:
            again = replace(original, event_id=uuid.uuid4())
        elif roll < 0.12:
            again = original
        else:
            continue
        after = result.arrivals.index(original) + 1
        result.arrivals.insert(rng.randint(after, len(result.arrivals)), again)
    result.phases = _phases(result.arrivals, starts)


def _phases(arrivals: list[SessionEvent], starts: list[SessionEvent]) -> list[list[SessionEvent]]:
    """Cut the arrivals where their order across topics matters: at each segment, after an
    authorization that later events must follow, around a held-back event."""
    phases: list[list[SessionEvent]] = []
    pending = list(starts)
    for event in arrivals:
        if pending and event is pending[0]:
            pending.pop(0)
            phases.append([])
        phases[-1].append(event)
    return phases


def _stragglers(
    rng: random.Random,
    previous: list[SessionEvent],
    opener: SessionEvent,
    skews: dict[str, timedelta],
) -> list[SessionEvent]:
    """Pipeline events of the previous session that happened just after the re-authorization
    opened the next one: the newest each producer sent, so only their session tells them
    apart."""
    pipeline = [e for e in previous if topic_of(e) == "pipeline"]
    picked = sorted(rng.sample(pipeline, min(len(pipeline), rng.randint(1, 3))), key=pipeline.index)
    opened = opener.occurred_at - skews[opener.producer]
    return [
        replace(
            e,
            event_id=uuid.uuid4(),
            occurred_at=opened + timedelta(milliseconds=i + 1) + skews[e.producer],
        )
        for i, e in enumerate(picked)
    ]


def _interleave(
    rng: random.Random, events: list[SessionEvent], keep_first: bool
) -> list[SessionEvent]:
    first = [events[0]] if keep_first else []
    return first + _merge(rng, events[len(first) :])


def _merge(rng: random.Random, events: list[SessionEvent]) -> list[SessionEvent]:
    """The events with the topics interleaved at random, each topic in its order."""
    queues: dict[str, list[SessionEvent]] = {}
    for event in events:
        queues.setdefault(topic_of(event), []).append(event)
    merged = []
    while queues:
        topic = rng.choice(sorted(queues))
        merged.append(queues[topic].pop(0))
        if not queues[topic]:
            del queues[topic]
    return merged


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def redelivered(rng: random.Random, told: Story) -> list[SessionEvent]:
    """Another delivery Kafka could make of the same story: each phase's topics merged anew,
    each topic still in its order."""
    return [event for phase in told.phases for event in _merge(rng, phase)]
