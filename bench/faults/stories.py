"""The campaign's stream: what each connection's producers send, and what must become of it.

Every connection follows one scenario, written as the events that really happen in order, each
with what must become of it (`expect`): applied, or refused with a reason. Retries with new
ids, exact duplicates, late events of an earlier session, stale and illegal events, events
that wait for an opener that never comes, abandoned authorizations and stalled stages that the
clock must end: each scenario says so itself, so the expected status records follow from the
scenarios and the transition table alone (`oracle.py`), not from the engine.

Invalid messages are every kind the contract names: garbage, an unknown schema, an unknown
event type, the wrong topic, a tombstone, a message at and one over the size limit, a NUL in an
id, an id too long, an id no route could serve, a year-1 stamp and one ten years ahead.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from syncstatus.schemas.codec import HEADER_SIZE, MAGIC
from syncstatus.schemas.messages import EventMessages
from syncstatus.statemachine.events import Account, EventFamily, EventType, SessionEvent, Substage

E = EventType
APPLY, STALE, ILLEGAL, SUPERSEDED, PARKED = (
    "apply",
    "stale",
    "illegal_transition",
    "superseded_session",
    "parked_too_long",
)
PRODUCERS = {
    EventFamily.AUTHORIZATION: "auth-service",
    EventFamily.WEBHOOK: "webhook-service",
    EventFamily.PIPELINE: "pipeline",
}
DEDUP_APP = "plaid"


@dataclass(frozen=True)
class Planned:
    """One message a producer sends: the event, and what must become of it."""

    event: SessionEvent
    expect: str = APPLY
    duplicate: bool = False  # the same event id again: changes nothing, refused by nobody


@dataclass
class Story:
    connection_id: str
    scenario: str
    messages: list[Planned] = field(default_factory=list)
    stalls: bool = False  # the last status must be ended by the service's clock


@dataclass(frozen=True)
class Invalid:
    topic_family: EventFamily
    key: bytes | None
    value: bytes | None
    reason: str
    what: str


class _Writer:
    """Stamps events of one connection with increasing times (ms apart at least)."""

    def __init__(self, rng: random.Random, cid: str, app: str, start: datetime) -> None:
        self.rng, self.cid, self.app, self.now = rng, cid, app, start
        self.story = Story(cid, "")

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def send(self, kind: EventType, session: str, expect: str = APPLY, **fields) -> SessionEvent:
        self.now += timedelta(milliseconds=self.rng.randint(5, 500))
        event = SessionEvent(
            event_id=self.new_id(),
            type=kind,
            connection_id=self.cid,
            session_id=f"{self.cid}:{session}",
            app=self.app,
            occurred_at=self.now,
            producer=PRODUCERS[kind.family],
            **fields,
        )
        self.story.messages.append(Planned(event, expect))
        return event

    def again(self, event: SessionEvent, expect: str = STALE) -> None:
        """A producer's retry with a new id: the same fact, the same stamp."""
        self.story.messages.append(Planned(replace(event, event_id=self.new_id()), expect))

    def duplicate(self, event: SessionEvent) -> None:
        self.story.messages.append(Planned(event, APPLY, duplicate=True))

    def authorized(self, session: str = "s1") -> None:
        self.send(E.AUTHORIZATION_STARTED, session)
        self.send(E.AUTHORIZATION_SUCCEEDED, session, attributes={"credential_id": session})

    def loaded(self, session: str, loading: EventType = E.LOADING_STARTED) -> None:
        """Loading to Loaded, and on to Deduplication for the apps that need it."""
        self.send(loading, session)
        if loading is E.WEBHOOK_PENDING:
            self.send(E.WEBHOOK_RECEIVED, session)
        self.send(E.LOADING_COMPLETED, session)
        if self.app == DEDUP_APP:
            self.send(E.DEDUPLICATION_STARTED, session)

    def synced(self, session: str = "s1", loading: EventType = E.LOADING_STARTED) -> None:
        self.loaded(session, loading)
        self.send(E.STRUCTURING_STARTED, session)
        self.send(E.STRUCTURING_COMPLETED, session)
        self.processed(session)
        self.send(E.SYNC_COMPLETED, session)

    def processed(self, session: str) -> None:
        self.send(E.PROCESSING_STARTED, session)
        for substage in self.rng.sample(list(Substage), len(Substage)):
            self.send(E.PROCESSING_SUBSTAGE_COMPLETED, session, substage=substage)
        self.send(E.PROCESSING_COMPLETED, session)


def _happy(w: _Writer) -> None:
    w.authorized()
    w.send(E.ACCOUNTS_SYNCED, "s1", accounts=(Account("a1", "Main", "active"),))
    w.synced()


def _retried_loading(w: _Writer) -> None:
    w.authorized()
    w.send(E.LOADING_STARTED, "s1")
    w.send(E.LOADING_FAILED, "s1", error="source answered 503")
    w.synced()


def _aggregator(w: _Writer) -> None:
    w.authorized()
    w.send(E.WEBHOOK_PENDING, "s1")
    w.send(E.WEBHOOK_FAILED, "s1", error="aggregator timed out")
    w.synced(loading=E.WEBHOOK_PENDING)


def _processing_retry(w: _Writer) -> None:
    w.authorized()
    w.loaded("s1")
    w.send(E.STRUCTURING_STARTED, "s1")
    w.send(E.STRUCTURING_COMPLETED, "s1")
    w.send(E.PROCESSING_STARTED, "s1")
    w.send(E.PROCESSING_SUBSTAGE_COMPLETED, "s1", substage=Substage.MONITORING)
    w.send(E.PROCESSING_FAILED, "s1", error="forecast failed")
    w.processed("s1")
    w.send(E.SYNC_COMPLETED, "s1")


def _retries_and_duplicates(w: _Writer) -> None:
    w.authorized()
    started = w.send(E.LOADING_STARTED, "s1")
    w.again(started)
    loaded = w.send(E.LOADING_COMPLETED, "s1")
    w.duplicate(loaded)
    if w.app == DEDUP_APP:
        w.send(E.DEDUPLICATION_STARTED, "s1")
    w.send(E.STRUCTURING_STARTED, "s1")
    w.send(E.STRUCTURING_COMPLETED, "s1")
    w.processed("s1")
    synced = w.send(E.SYNC_COMPLETED, "s1")
    w.duplicate(synced)
    w.send(E.LOADING_COMPLETED, "s1", ILLEGAL)


def _resynced_with_a_late_event(w: _Writer) -> None:
    w.authorized()
    w.synced()
    late = next(p.event for p in w.story.messages if p.event.type is E.LOADING_COMPLETED)
    w.send(E.LOADING_STARTED, "s2")
    w.again(late, SUPERSEDED)
    w.send(E.LOADING_COMPLETED, "s2")
    if w.app == DEDUP_APP:
        w.send(E.DEDUPLICATION_STARTED, "s2")
    w.send(E.STRUCTURING_STARTED, "s2")
    w.send(E.STRUCTURING_FAILED, "s2", error="unexpected column")


def _failed_reauthorization(w: _Writer) -> None:
    w.authorized()
    w.synced()
    w.send(E.AUTHORIZATION_STARTED, "s2")
    w.send(E.AUTHORIZATION_FAILED, "s2", error="wrong password")
    w.send(E.LOADING_STARTED, "s3")  # the old credentials still work
    w.send(E.LOADING_FAILED, "s3", error="quota exceeded")


def _deauthorized(w: _Writer) -> None:
    w.authorized()
    w.synced()
    w.send(E.DEAUTHORIZED, "revoked", error="token revoked")
    w.send(E.WEBHOOK_RECEIVED, "ghost", PARKED)  # a session that never opens


def _abandoned_authorization(w: _Writer) -> None:
    w.send(E.AUTHORIZATION_STARTED, "s1")
    w.story.stalls = True


def _stalled_stage(w: _Writer) -> None:
    w.authorized()
    w.loaded("s1")
    w.story.stalls = True


SCENARIOS: dict[str, tuple[int, Callable[[_Writer], None]]] = {
    "happy": (6, _happy),
    "retried-loading": (3, _retried_loading),
    "aggregator": (3, _aggregator),
    "processing-retry": (2, _processing_retry),
    "retries-and-duplicates": (3, _retries_and_duplicates),
    "resynced-late-event": (2, _resynced_with_a_late_event),
    "failed-reauthorization": (2, _failed_reauthorization),
    "deauthorized": (2, _deauthorized),
    "abandoned-authorization": (1, _abandoned_authorization),
    "stalled-stage": (1, _stalled_stage),
}


def stories(rng: random.Random, connections: int, start: datetime) -> list[Story]:
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][0] for n in names]
    told = []
    for c in range(connections):
        app = rng.choice(["facebook_ads", "hubspot", DEDUP_APP])
        writer = _Writer(rng, f"conn-{c:05d}", app, start + timedelta(seconds=c))
        name = rng.choices(names, weights)[0]
        SCENARIOS[name][1](writer)
        writer.story.scenario = name
        told.append(writer.story)
    return told


def invalid_messages(rng: random.Random, count: int, max_message_bytes: int) -> list[Invalid]:
    """`count` messages cycling through every kind the contract names, each unique."""
    codec = EventMessages().codec
    now = datetime.now(UTC)
    made = []
    for i in range(count):
        cid = f"invalid-{i:05d}"
        record = {
            "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "type": E.AUTHORIZATION_STARTED.value,
            "connection_id": cid,
            "session_id": f"{cid}:s1",
            "app": "facebook_ads",
            "occurred_at": now - timedelta(days=1),
            "producer": "bench.faults",
            "error": None,
            "substage": None,
            "attributes": {},
            "accounts": None,
        }
        kinds = _invalid_kinds(rng, codec, record, max_message_bytes)
        what, family, value, reason = kinds[i % len(kinds)]
        made.append(Invalid(family, cid.encode(), value, reason, what))
    return made


def _invalid_kinds(rng, codec, record, limit) -> list[tuple[str, EventFamily, bytes | None, str]]:
    auth = EventFamily.AUTHORIZATION
    encoded = codec.encode

    def garbage(size: int) -> bytes:
        value = rng.randbytes(size)
        return value if not value.startswith(MAGIC) else b"\x00" + value[1:]

    return [
        ("garbage", auth, garbage(rng.randint(1, 64)), "undecodable"),
        (
            "unknown schema",
            auth,
            MAGIC + rng.randbytes(8) + encoded(record)[HEADER_SIZE:],
            "unknown_schema",
        ),
        ("unknown event type", auth, encoded(record | {"type": "UNKNOWN"}), "invalid_event"),
        ("wrong topic", EventFamily.PIPELINE, encoded(record), "wrong_topic"),
        ("tombstone", auth, None, "undecodable"),
        ("at the size limit", auth, garbage(limit), "undecodable"),
        ("over the size limit", auth, garbage(limit + 1), "undecodable"),
        ("NUL in an id", auth, encoded(record | {"session_id": "s\x001"}), "invalid_event"),
        ("id too long", auth, encoded(record | {"producer": "p" * 257}), "invalid_event"),
        ("id with a slash", auth, encoded(record | {"connection_id": "a/b"}), "invalid_event"),
        (
            "year 1",
            auth,
            encoded(record | {"occurred_at": datetime(1, 1, 1, tzinfo=UTC)}),
            "invalid_event",
        ),
        (
            "ten years ahead",
            auth,
            encoded(record | {"occurred_at": datetime.now(UTC) + timedelta(days=3650)}),
            "invalid_event",
        ),
    ]
