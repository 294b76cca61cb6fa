"""Property: a redrive header buys an event a second application only when the store vouches
for it (that dead letter was asked to be redriven, and it refused this very event), and then
at most once, however the messages arrive.

A few connections, each with a realistic story (tests/helpers/producers.py: sessions with
failures and retries, revocations, account syncs, topics interleaved, retries with new ids,
duplicates, late events of left sessions, clocks off by up to the tolerance), then one more
session (its tail), Authorization onwards. Some events of each tail arrive before the tail's
authorization, wait in the parking and, once the park window passed, are refused as
`parked_too_long`: they are the dead letters an operator would redrive once the cause is gone.
Into what follows, in batches cut anywhere and the connections interleaved as partitions hold
them, come: redrives asked for (published once or more), redrives of any other dead letter
asked for (a stale retry, a late event of a left session, a redrive refused again), redrive
headers nobody's request stands behind (on the refused event itself, on other events, on
retries with new ids, naming dead letters never asked for, of another connection or of none),
and replays with the same or new ids. Forged headers also ride on the story's own duplicates.

Two independent oracles judge the run, neither calling the engine:

- the claim rule as the docstring of `_claim_keys` states it: an item is claimed under its
  dead letter's key when that dead letter was asked for (by this test, through the operator's
  `DeadLetterTriage.redrive`) and refused this event, under its event id otherwise; a claim
  taken before (in an earlier batch or earlier in the same one) is a duplicate. Every item's
  outcome must be a duplicate exactly when the rule says so;
- the true story (tests/helpers/oracle.py): each connection ends where the story's truth and
  the tail's true events up to the first parked-out event nobody redrove end (the tail's later
  events keep waiting for it), with that status history, once each.

Replays with new ids are of the story's events only: a fresh copy of a parked-out tail event
would be a new event that may apply in its own right, which is no question of redrives.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncstatus.service.dead_letters import DeadLetterTriage
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import REDRIVE_HEADER, Inbound, Origin
from syncstatus.statemachine.connection import Outcome
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.records import RefusalReason
from syncstatus.statemachine.table import TRANSITIONS
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE
from tests.helpers.examples import story_settings
from tests.helpers.fake_store import FakeStore
from tests.helpers.oracle import expected
from tests.helpers.producers import Story, _interleave, _Writer, redelivered, story, topic_of
from tests.unit.test_realistic_producers import DEDUP, NOW, POLICY, TOLERANCE, assert_matches

E = EventType
JUMP = NOW + POLICY.park_window + timedelta(minutes=1)
"""The engine's clock once the early tail events have waited past the park window."""
INPUT_TOPICS = ("auth", "webhooks", "pipeline")
NO_SUCH_DEAD_LETTER = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now


# -- what is delivered ------------------------------------------------------------------


def tail_of(rng: random.Random, told: Story) -> list[SessionEvent]:
    """One more session, hours after the story, as its producers would report it going well:
    Authorization to Loading (or through Waiting For Webhook) onwards, cut anywhere after its
    authorization started."""
    latest = max(e.occurred_at for e in told.arrivals)
    w = _Writer(rng, told.connection_id, told.app, told.skews, latest)
    w.now += TOLERANCE * 4 + timedelta(minutes=rng.randint(1, 600))
    session = f"{told.connection_id}:tail"
    w.emit(E.AUTHORIZATION_STARTED, session, "auth")
    w.emit(
        E.AUTHORIZATION_SUCCEEDED,
        session,
        "auth",
        attributes={"credential_id": f"cred-{session}", "business_account": "Acme"},
    )
    if rng.random() < 0.3:
        w.emit(E.WEBHOOK_PENDING, session, "loader")
        w.emit(E.WEBHOOK_RECEIVED, session, "hooks")
    else:
        w.emit(E.LOADING_STARTED, session, "loader")
    w.emit(E.LOADING_COMPLETED, session, "loader")
    if told.app in DEDUP:
        w.emit(E.DEDUPLICATION_STARTED, session, "loader")
    w.emit(E.STRUCTURING_STARTED, session, "structurer")
    w.emit(E.STRUCTURING_COMPLETED, session, "structurer")
    w.emit(E.PROCESSING_STARTED, session, "processor")
    for s in rng.sample(list(Substage), len(Substage)):
        w.emit(E.PROCESSING_SUBSTAGE_COMPLETED, session, "processor", substage=s)
    w.emit(E.PROCESSING_COMPLETED, session, "processor")
    w.emit(E.SYNC_COMPLETED, session, "processor")
    return w.events[: rng.randint(2, len(w.events))]


def can_be_parked_out(event: SessionEvent) -> bool:
    """An event that, arriving before its session's authorization, waits for it: no opener
    (which would open the session itself), and no substage (the others, by the same producer
    and later, would apply without it and make its redrive stale)."""
    return (
        event.type not in TRANSITIONS.session_openers
        and event.type is not E.PROCESSING_SUBSTAGE_COMPLETED
    )


@dataclass(frozen=True)
class Deliver:
    event: SessionEvent
    forged: int | None = None
    """A redrive header the producer wrote itself, naming this dead letter id."""


@dataclass(frozen=True)
class Ask:
    """The operator asks for the redrive of a parked-out event's dead letter (None: of any
    dead letter of the connection)."""

    connection_id: str
    victim: SessionEvent | None = None


@dataclass(frozen=True)
class Redrive:
    """The relay publishes a redrive asked for: of the victim's dead letter (None: of one
    asked for on the connection, chosen when it is published)."""

    connection_id: str
    victim: SessionEvent | None = None


@dataclass(frozen=True)
class Forge:
    """`event`'s message with a redrive header nobody's request need stand behind: naming the
    victim's own dead letter (`victim`), or any id (a dead letter of any connection, or none)."""

    event: SessionEvent
    victim: SessionEvent | None = None


class Jump:
    """The park window passes: the engine's clock moves on."""


@dataclass
class Plan:
    stories: dict[str, Story]
    tails: dict[str, list[SessionEvent]]
    victims: dict[str, list[SessionEvent]]
    steps: list = field(default_factory=list)


def plan(rng: random.Random, connections: int, as_kafka_might: bool) -> Plan:
    """Every connection's story, then its early tail events; the park window passes; each
    tail's authorization; then the rest of the tails with the redrives, forgeries and replays
    slipped in anywhere after it, the connections interleaved."""
    stories, tails, victims = {}, {}, {}
    before: list[list] = []
    after: list[list] = []
    openers = []
    for n in range(connections):
        told = story(rng, f"c-{n}", TOLERANCE, DEDUP)
        cid = told.connection_id
        tail = tail_of(rng, told)
        eligible = [e for e in tail[1:] if can_be_parked_out(e)]
        early = sorted(rng.sample(eligible, min(len(eligible), rng.randint(1, 2))), key=tail.index)
        stories[cid], tails[cid], victims[cid] = told, tail, early
        arrivals = redelivered(rng, told) if as_kafka_might else told.arrivals
        seen: set[uuid.UUID] = set()
        phase_one = []
        for e in arrivals:
            duplicate = e.event_id in seen
            seen.add(e.event_id)
            forged = rng.randint(1, 30) if duplicate and rng.random() < 0.5 else None
            phase_one.append(Deliver(e, forged))
        before.append(phase_one + [Deliver(v) for v in early])
        rest = _interleave(rng, [e for e in tail if e not in early], keep_first=True)
        openers.append(Deliver(rest[0]))
        after.append(extras(rng, told, early, [Deliver(e) for e in rest[1:]]))
    return Plan(
        stories,
        tails,
        victims,
        [*merge(rng, before), Jump(), *rng.sample(openers, len(openers)), *merge(rng, after)],
    )


def extras(rng: random.Random, told: Story, early: list[SessionEvent], rest: list) -> list:
    """The rest of a tail with the operator's, the relay's and the forgers' messages."""
    cid = told.connection_id
    steps = list(rest)

    def slip(step, at_least: int = 0) -> int:
        at = rng.randint(at_least, len(steps))
        steps.insert(at, step)
        return at

    delivered = [*told.arrivals, *early]
    for victim in early:
        if rng.random() < 0.85:
            asked = slip(Ask(cid, victim))
            for _ in range(rng.choice([1, 1, 2, 3])):
                slip(Redrive(cid, victim), asked + 1)
        for _ in range(rng.randint(0, 2)):
            slip(Forge(victim, victim))
    for _ in range(rng.randint(0, 3)):
        asked = slip(Ask(cid))
        slip(Redrive(cid), asked + 1)
    for _ in range(rng.randint(0, 4)):
        slip(Forge(rng.choice(delivered)))
    for _ in range(rng.randint(0, 3)):
        slip(Forge(replace(rng.choice(told.truth), event_id=uuid.uuid4())))
    for _ in range(rng.randint(0, 3)):
        slip(Deliver(rng.choice(delivered)))
    for _ in range(rng.randint(0, 3)):
        slip(Deliver(replace(rng.choice(told.truth), event_id=uuid.uuid4())))
    return steps


def merge(rng: random.Random, queues: list[list]) -> list:
    """The connections' steps as partitions hold them: each connection's in its order."""
    queues = [list(q) for q in queues if q]
    merged = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return merged


# -- the claim rule, independently --------------------------------------------------------


@dataclass
class Claims:
    """The rule of `_claim_keys`, from its words: `asked` holds the dead letters this test
    asked to redrive, each with the event it refused."""

    asked: dict[int, uuid.UUID] = field(default_factory=dict)
    taken: set[tuple[str, object]] = field(default_factory=set)

    def key(self, item: Inbound) -> tuple[str, object]:
        named = item.redrive_of
        if named is not None and self.asked.get(named) == item.event.event_id:
            return ("dead letter", named)
        return ("event", item.event.event_id)

    def take(self, item: Inbound) -> tuple[tuple[str, object], bool]:
        key = self.key(item)
        fresh = key not in self.taken
        self.taken.add(key)
        return key, fresh


@dataclass
class Delivery:
    step: object
    item: Inbound
    key: tuple[str, object]
    fresh: bool
    outcome: Outcome


# -- the run ------------------------------------------------------------------------------


class Run:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clock = Clock()
        self.store = FakeStore()
        self.engine = StatusEngine(self.store, POLICY, clock=self.clock)
        self.triage = DeadLetterTriage(
            self.store, self.engine, _never_decoded, INPUT_TOPICS, self.clock
        )
        self.claims = Claims()
        self.deliveries: list[Delivery] = []
        self.offsets = iter(range(1, 10**9))

    def go(self, steps: list, cuts: list[int]) -> None:
        bounds = {0, len(steps), *(c % max(1, len(steps)) for c in cuts)}
        batch: list = []
        for at, step in enumerate(steps):
            if at in bounds or isinstance(step, Ask | Jump):
                self.apply(batch)
                batch = []
            if isinstance(step, Jump):
                self.clock.now = JUMP
            elif isinstance(step, Ask):
                self.ask(step)
            else:
                batch.append(step)
        self.apply(batch)

    def apply(self, steps: list) -> None:
        """One batch: each step becomes its message now, from what the store holds now."""
        resolved = [(s, item) for s in steps if (item := self.message(s)) is not None]
        if not resolved:
            return
        expected_claims = [self.claims.take(item) for _, item in resolved]
        result = self.engine.apply_batch([item for _, item in resolved])
        for (step, item), (key, fresh), outcome in zip(
            resolved, expected_claims, result.outcomes, strict=True
        ):
            self.deliveries.append(Delivery(step, item, key, fresh, outcome))

    def ask(self, step: Ask) -> None:
        letters = self.letters(step.connection_id)
        if step.victim is not None:
            letters = [d for d in letters if d.event_id == step.victim.event_id]
        if not letters:
            return
        letter = self.rng.choice(letters)
        report = self.triage.redrive([letter.id], "alice", scope=EVERY_WORKSPACE)
        if letter.id in report.requested:
            self.claims.asked[letter.id] = letter.event_id

    def message(self, step) -> Inbound | None:
        if isinstance(step, Deliver):
            headers = () if step.forged is None else ((REDRIVE_HEADER, b"%d" % step.forged),)
            return Inbound(step.event, self.origin(step.event, headers))
        if isinstance(step, Redrive):
            asked = [
                d
                for d in self.letters(step.connection_id)
                if d.id in self.claims.asked
                and (step.victim is None or d.event_id == step.victim.event_id)
            ]
            if not asked:
                return None
            letter = self.rng.choice(asked)
            event = SessionEvent.from_record(dict(letter.event))
            return Inbound(event, letter.origin.redriven(letter.id, "alice"))
        assert isinstance(step, Forge)
        if step.victim is not None:
            own = [
                d.id
                for d in self.letters(step.event.connection_id)
                if d.event_id == step.victim.event_id
            ]
            named = own[0] if own else NO_SUCH_DEAD_LETTER
        else:
            ids = [d.id for d in self.store.dead_letters()] + [NO_SUCH_DEAD_LETTER]
            named = self.rng.choice(ids)
        origin = self.origin(step.event).redriven(named, "mallory")
        return Inbound(step.event, origin)

    def origin(self, event: SessionEvent, headers: tuple = ()) -> Origin:
        raw = f"{event.event_id}".encode()
        key = event.connection_id.encode()
        return Origin(topic_of(event), 0, next(self.offsets), key, raw, headers)

    def letters(self, connection_id: str):
        return [d for d in self.store.dead_letters() if d.connection_id == connection_id]


def _never_decoded(origin: Origin):
    raise AssertionError("the property never asks for a dry run")


# -- the property -------------------------------------------------------------------------


def assert_follows_the_claim_rule(run: Run) -> None:
    for d in run.deliveries:
        said = "a duplicate" if not d.fresh else "fresh"
        assert (d.outcome is Outcome.DUPLICATE) == (not d.fresh), (
            f"{type(d.step).__name__} of {d.item.event.type.value} "
            f"({d.item.event.event_id}) redrive_of={d.item.redrive_of}: the rule says it is "
            f"{said} (claim {d.key[0]}), the engine said {d.outcome.value}"
        )
        unvouched = d.item.redrive_of is not None and d.key[0] == "event"
        if unvouched:
            assert d.outcome in (Outcome.DUPLICATE, Outcome.REFUSED), (
                f"a header nobody asked for got {d.item.event.type.value} {d.outcome.value}"
            )


def taken_redrives(run: Run) -> Counter:
    """For each event, how many redrives the rule says were taken (asked for, of it)."""
    return Counter(
        d.item.event.event_id for d in run.deliveries if d.key[0] == "dead letter" and d.fresh
    )


def assert_each_connection_ends_where_its_truth_does(run: Run, told: Plan) -> None:
    redriven = taken_redrives(run)
    for cid, story_told in told.stories.items():
        tail, victims = told.tails[cid], told.victims[cid]
        for v in victims:
            letters = [d for d in run.store.dead_letters() if d.event_id == v.event_id]
            assert letters and letters[0].reason == RefusalReason.PARKED_TOO_LONG.value, (
                "guard: an early tail event was parked out"
            )
            assert redriven[v.event_id] <= 1, "a redrive taken twice"
        waiting = [tail.index(v) for v in victims if not redriven[v.event_id]]
        truth = story_told.truth + tail[: min(waiting, default=len(tail))]
        want = expected(truth, DEDUP)
        row = run.store.connection(cid)
        assert_matches(row.connection(), run.store.tables.views[cid], want)
        history = run.store.history(cid)
        assert [(t.from_status, t.to_status, t.event_type) for t in history] == [
            (a, b, k) for a, b, k, _ in want.trace
        ]
        assert [t.sequence for t in history] == list(range(1, len(history) + 1))
        assert len({t.event_id for t in history}) == len(history), "an event applied twice"
        reports = Counter((t.producer, t.event_type, t.substage, t.occurred_at) for t in history)
        assert max(reports.values(), default=1) == 1, "the same report applied twice"
        applied = {t.event_id for t in history}
        for v in victims:
            assert (v.event_id in applied) == (v in truth)


@story_settings(120)
@given(
    st.randoms(use_true_random=False),
    st.integers(1, 3),
    st.lists(st.integers(0, 10_000), max_size=16),
    st.booleans(),
)
def test_a_redrive_applies_once_and_only_when_the_store_vouches_for_it(
    rng, connections, cuts, as_kafka_might
):
    told = plan(rng, connections, as_kafka_might)
    run = Run(rng)
    run.go(told.steps, cuts)
    assert_follows_the_claim_rule(run)
    assert_each_connection_ends_where_its_truth_does(run, told)


def test_the_generator_makes_what_the_property_claims():
    """Guard the guard: redrives taken, published again, forged on the refused event before
    and without a request, forged elsewhere, and refused-again dead letters redriven."""
    counts: Counter = Counter()
    for seed in range(40):
        rng = random.Random(seed)
        told = plan(rng, 2, seed % 2 == 0)
        run = Run(rng)
        run.go(told.steps, [rng.randint(0, 10_000) for _ in range(8)])
        for d in run.deliveries:
            if isinstance(d.step, Redrive):
                counts["redrive taken" if d.fresh else "redrive again"] += 1
            elif isinstance(d.step, Forge) and d.key[0] == "event":
                own = d.step.victim is not None
                counts["forged on the refused event" if own else "forged elsewhere"] += 1
            elif isinstance(d.step, Deliver) and d.item.redrive_of is not None:
                counts["forged on a duplicate"] += 1
        counts["victims waiting"] += sum(
            1 for vs in told.victims.values() for v in vs if not taken_redrives(run)[v.event_id]
        )
    assert counts["redrive taken"] > 40 and counts["redrive again"] > 15, counts
    assert counts["forged on the refused event"] > 20, counts
    assert counts["forged elsewhere"] > 40 and counts["forged on a duplicate"] > 10, counts
    assert counts["victims waiting"] > 5, counts
