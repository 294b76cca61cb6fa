"""Events/s of the status engine, the stack's ceiling and the naive approach, on PostgreSQL.

    python -m bench.engine [--connections 2000] [--batch 1000] [--rounds 1] [--skip-naive]
                           [--profile FILE | --statements]
    python -m bench.engine --connections-preloaded N [--rounds 3]

Every loop applies the same interleaved stream (every connection goes Authorization → Synced,
the events of many connections mixed as they would arrive from Kafka) to its own clone of one
migrated database, and is timed from message bytes to the encoded StatusChanged records:

- engine: what the consumer does with a poll, `MessageDecoder` (the Avro codec of
  `syncstatus.schemas.messages`, the input limits, the topic check) → `StatusEngine.apply_batch`
  (decide with the connection aggregate, persist through the PostgreSQL unit of work, 1,000
  events per transaction) → `StatusChangeMessages.encode` of each transition, as the relay
  would publish it;
- ceiling (`bench.ceiling`): the same rows written with the fastest statements psycopg 3 and
  fastavro offer and no abstraction, so engine/ceiling says how much of the engine's cost is
  ours; a check (`bench.same_rows`) compares both databases table by table and both loops'
  records, and the run says whether they are equal;
- naive: a python-statemachine instance and a commit per event through SQLAlchemy, on events
  already decoded (decoding and encoding are about 1% of its cost per event).

Both loops run with the garbage-collector settings `syncstatus run` makes once started
(`syncstatus.runtime.heap`), so neither is charged for collections the service does not make.

Each loop's line gives events/s and µs/event of wall time, and its CPU per event in this
process and in the PostgreSQL backend that served it: the machine is shared, and a neighbour
taking a core stretches wall time but not CPU time, so the CPU ratio is the steadier one; the
line ends with the time the garbage collector ran within the loop (wall time, within the
loop's own). The load average is printed at the start and the end for the same reason.

The loops run interleaved, a batch of one and then a batch of the other (the first to go
alternating), each timed only while it applies its own batch: this machine changes speed from
one second to the next, and a ratio of two loops measured minutes apart would mostly measure
that. What they still share is the process's collector (a collection walks every loop's live
objects, and is charged to the loop it interrupts) and PostgreSQL's buffers. `--rounds`
repeats them on new connections and reports each round's ratio; the ratio printed last is the
median of those, never a ratio of medians taken from different rounds.

`--connections-preloaded N` measures instead how the cost per event grows with the tables: the
engine and the ceiling on databases preloaded (`bench.preload`, by COPY) with 1,000 and with N
whole sessions, all four interleaved, each round on new connections; the goal is a cost at N
within 15% of the cost at 1,000. `--profile FILE` (cProfile) and `--statements` (each
statement timed, client CPU apart) add a run of each loop on its own database, after the
measured ones, and print where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import sqlalchemy as sa
from tests.helpers.streams import stream

from bench.ceiling import Ceiling
from bench.preload import clone, connect, migrated, timed_preload
from bench.same_rows import Comparison, compare
from bench.statements import report as statement_report
from bench.statements import timed_statements
from syncstatus.consumers.event_consumer import MessageDecoder
from syncstatus.devtools.embedded import EmbeddedPostgres
from syncstatus.kafka import family_topics, input_topics
from syncstatus.runtime.heap import settle_after_start
from syncstatus.schemas.messages import EventMessages, StatusChangeMessages
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound, Origin
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Policy
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.store.database import create_engine
from syncstatus.store.uow import PostgresStore

E = EventType
BASELINE_PRELOADED = 1000
GROWTH_GOAL = 1.15
"""Most the cost per event may grow from 1,000 preloaded connections to N."""
PROFILE_TOP = 30


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Run:
    """One timed loop: its events, its wall time, the CPU time of this process and of the
    PostgreSQL backend that served it, the time the garbage collector ran within it, and the
    StatusChanged records it encoded."""

    events: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    collector_seconds: float
    records: list[bytes]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def micros(self) -> float:
        return 1e6 * self.seconds / self.events

    @property
    def cpu_micros(self) -> float:
        """The work per event, client and server: what a busy neighbour does not stretch."""
        return 1e6 * (self.cpu_seconds + self.server_cpu_seconds) / self.events

    def line(self) -> str:
        client, server = (
            1e6 * s / self.events for s in (self.cpu_seconds, self.server_cpu_seconds)
        )
        return (
            f"{self.rate:,.0f} events/s ({self.micros:.1f} µs/event; CPU per event "
            f"{client:.1f} µs here + {server:.1f} µs in PostgreSQL; garbage collector "
            f"{1e6 * self.collector_seconds / self.events:.1f} µs)"
        )


class Clock:
    """Times a loop over the windows it runs in: wall time, this process's CPU time and the CPU
    time of the PostgreSQL backend serving it (from /proc), summed over every `with` block. On
    a shared machine the CPU times are the steadier measure: a neighbour taking a core
    stretches the wall time, not the work done. The collector's own time is counted apart
    (`gc.callbacks`), since how often it runs depends on the objects a loop keeps alive, not
    on its statements (`syncstatus.runtime.heap`)."""

    def __init__(self, backend_pid: int, profile: cProfile.Profile | None = None) -> None:
        self.backend = psutil.Process(backend_pid)
        self.profile = profile
        self.spent = (0.0, 0.0, 0.0)
        self.collecting = 0.0
        self._collection_started = 0.0

    def __enter__(self) -> Clock:
        self._started = self._now()
        if self.profile:
            self.profile.enable()
        gc.callbacks.append(self._on_collection)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.profile:
                self.profile.disable()
            window = (b - a for a, b in zip(self._started, self._now(), strict=True))
            self.spent = tuple(s + w for s, w in zip(self.spent, window, strict=True))
        finally:
            gc.callbacks.remove(self._on_collection)

    def run(self, events: int, records: list[bytes]) -> Run:
        return Run(events, *self.spent, self.collecting, records)

    def _on_collection(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._collection_started = time.perf_counter()
        else:
            self.collecting += time.perf_counter() - self._collection_started

    def _now(self) -> tuple[float, float, float]:
        times = self.backend.cpu_times()
        return time.perf_counter(), time.process_time(), times.user + times.system


def messages_of(events: Sequence[SessionEvent]) -> list[Message]:
    """Each event as the producer publishes it: Avro bytes on its family's topic."""
    codec, topics = EventMessages(), family_topics(Settings())
    return [
        Message(topics[e.type.family], e.connection_id.encode(), codec.encode(e)) for e in events
    ]


class EngineLoop:
    """What the consumer does with a poll: decode, `StatusEngine.apply_batch`, and the
    StatusChanged record of each transition, encoded as the relay publishes it."""

    def __init__(self, url: str) -> None:
        self.db = create_engine(url)
        self.engine = StatusEngine(PostgresStore(self.db), Policy())
        self.decode = MessageDecoder(EventMessages(), input_topics(Settings()))
        self.status = StatusChangeMessages()
        with self.db.connect() as conn:  # the pool's connection, opened here: no event's cost
            self.backend_pid = conn.connection.driver_connection.info.backend_pid

    def apply(self, messages: Sequence[Message], first_offset: int) -> list[bytes]:
        decoded = [
            self.decode(Origin(m.topic, 0, first_offset + i, m.key, m.value))
            for i, m in enumerate(messages)
        ]
        inbound = [d for d in decoded if isinstance(d, Inbound)]
        rejected = [d for d in decoded if not isinstance(d, Inbound)]
        result = self.engine.apply_batch(inbound, rejected)
        return [self.status.encode(t) for t in result.transitions]

    def __enter__(self) -> EngineLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.dispose()


class CeilingLoop:
    """`bench.ceiling` on a psycopg connection of its own."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        self.ceiling = Ceiling(self.conn, Policy())
        self.backend_pid = self.conn.info.backend_pid

    def apply(self, messages: Sequence[Message], first_offset: int) -> list[bytes]:
        return self.ceiling.apply([m.value for m in messages])

    def __enter__(self) -> CeilingLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


LOOPS: dict[str, Callable[[str], EngineLoop | CeilingLoop]] = {
    "engine": EngineLoop,
    "ceiling": CeilingLoop,
}


Key = tuple[str, int]
"""A loop's name in LOOPS and the connections its database held before it started."""


def interleaved(
    urls: Mapping[Key, str],
    messages: Sequence[Message],
    batch: int,
    round_number: int = 0,
    profile: cProfile.Profile | None = None,
) -> dict[Key, Run]:
    """Each loop on its own database, batch by batch in turn, so that a machine which changes
    speed from one second to the next changes it for all of them: each is timed only while it
    applies its own batch. The first to go alternates from batch to batch and from round to
    round, and the collector starts each round from nothing, so that neither loop always
    inherits what came before it."""
    with contextlib.ExitStack() as stack:
        loops = {key: stack.enter_context(LOOPS[key[0]](url)) for key, url in urls.items()}
        clocks = {key: Clock(loop.backend_pid, profile) for key, loop in loops.items()}
        records: dict[Key, list[bytes]] = {key: [] for key in loops}
        gc.collect()
        for n, start in enumerate(range(0, len(messages), batch), start=round_number):
            chunk = messages[start : start + batch]
            for key in list(loops)[:: 1 if n % 2 == 0 else -1]:
                with clocks[key]:
                    records[key].extend(loops[key].apply(chunk, start))
    return {key: clocks[key].run(len(messages), records[key]) for key in loops}


def run_naive(url: str, events: list[SessionEvent]) -> float:
    """A machine instance per event and a commit per event through SQLAlchemy."""
    db = create_engine(url)
    started = time.perf_counter()
    for e in events:
        with db.begin() as tx:
            row = tx.execute(
                sa.text(
                    "SELECT status, version, completed_substages FROM connections "
                    "WHERE connection_id = :c FOR UPDATE"
                ),
                {"c": e.connection_id},
            ).first()
            machine = ConnectionStatusMachine(start_value=row.status if row else NEW)
            done = frozenset(Substage(s) for s in (row.completed_substages if row else []))
            machine.send(e.type.trigger, ctx=GuardContext(completed_substages=done))
            status = next(iter(machine.configuration_values))
            version = (row.version if row else 0) + 1
            if e.type is E.PROCESSING_SUBSTAGE_COMPLETED:
                done = done | {e.substage}
            params = {
                "c": e.connection_id,
                "s": int(status),
                "v": version,
                "sess": e.session_id,
                "at": e.occurred_at,
                "subs": sorted(s.value for s in done),
                "from": row.status if row else None,
                "id": e.event_id,
                "type": e.type.value,
            }
            tx.execute(sa.text("INSERT INTO processed_events (event_id) VALUES (:id)"), params)
            tx.execute(
                sa.text(
                    "INSERT INTO connections (connection_id, app, status, version, session_id, "
                    "status_changed_at, completed_substages) "
                    "VALUES (:c, 'app', :s, :v, :sess, now(), :subs) "
                    "ON CONFLICT (connection_id) DO UPDATE SET status = :s, version = :v, "
                    "completed_substages = :subs"
                ),
                params,
            )
            tx.execute(
                sa.text(
                    "INSERT INTO status_history (connection_id, sequence, session_id, app, "
                    "from_status, to_status, event_id, event_type, producer, occurred_at, "
                    "recorded_at) VALUES (:c, :v, :sess, 'app', :from, :s, :id, :type, 'bench', "
                    ":at, now())"
                ),
                params,
            )
            tx.execute(
                sa.text("INSERT INTO outbox (connection_id, sequence) VALUES (:c, :v)"), params
            )
    rate = len(events) / (time.perf_counter() - started)
    db.dispose()
    return rate


def check(
    engine_url: str, ceiling_url: str, events: Sequence[SessionEvent], runs: tuple[Run, Run]
) -> Comparison:
    return compare(
        engine_url,
        ceiling_url,
        sorted({e.connection_id for e in events}),
        [e.event_id for e in events],
        (runs[0].records, runs[1].records),
    )


def databases(server: EmbeddedPostgres, template: str, sizes: Sequence[int]) -> dict[Key, str]:
    """(loop, preloaded connections) -> a database of its own, the same for every round."""
    urls = {}
    for size in sizes:
        if not size:
            urls["engine", 0], urls["ceiling", 0] = (clone(server, template, n) for n in LOOPS)
            continue
        url, seconds = timed_preload(server, template, size)
        started = time.perf_counter()
        urls["engine", size], urls["ceiling", size] = url, clone(server, url, "ceiling")
        print(
            f"preloaded {size:,} connections ({14 * size:,} events' rows) in {seconds:.1f} s, "
            f"cloned in {time.perf_counter() - started:.1f} s"
        )
    return urls


def measure(
    server: EmbeddedPostgres, template: str, sizes: Sequence[int], args: argparse.Namespace
) -> tuple[dict[Key, list[Run]], list[SessionEvent]]:
    """Every round applies a new stream (new connections) with every loop at every size,
    interleaved batch by batch; the last round is checked, ceiling against engine, at each
    size, and its events returned."""
    urls = databases(server, template, sizes)
    runs: dict[Key, list[Run]] = {key: [] for key in urls}
    for r in range(args.rounds):
        prefix = "conn" if args.rounds == 1 else f"round{r}"
        events = stream(args.connections, prefix=prefix, producer="bench")
        done = interleaved(urls, messages_of(events), args.batch, r)
        for key, run in done.items():
            runs[key].append(run)
            if args.rounds > 1:
                print(f"round {r + 1}, {key[0]}{at(key[1])}: {run.line()}")
        if args.rounds > 1:
            for size in sizes:
                rate, cpu = ratios(*(done[name, size] for name in LOOPS))
                print(f"round {r + 1}{at(size)}: {ratio_text(rate, cpu)}")
        if r == args.rounds - 1:
            for size in sizes:
                engine, ceiling = (done[name, size] for name in LOOPS)
                comparison = check(
                    urls["engine", size], urls["ceiling", size], events, (engine, ceiling)
                )
                print(f"{comparison.summary()}{at(size)}")
    return runs, events


def at(size: int) -> str:
    return f" at {size:,} preloaded" if size else ""


def compare_loops(server: EmbeddedPostgres, template: str, args: argparse.Namespace) -> None:
    """The default run: engine and ceiling on the same events, then the naive approach."""
    runs, events = measure(server, template, (0,), args)
    engine, ceiling = (median_run(runs[name, 0]) for name in LOOPS)
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"engine: {engine.events} events, {args.connections} connections, batch {args.batch}, "
        f"message bytes → StatusChanged bytes{rounds}: {engine.line()}"
    )
    print(f"ceiling (psycopg 3 + fastavro, same events, same rows): {ceiling.line()}")
    rate, cpu = median_ratios(runs["engine", 0], runs["ceiling", 0])
    print(
        f"ratio engine/ceiling{' (median of the rounds)' if args.rounds > 1 else ''}: "
        f"{rate:.2f} in events/s; {cpu:.2f} in CPU per event, client and server "
        f"(the engine does {1 / cpu:.1f}x the ceiling's work)"
    )
    if not args.skip_naive:
        naive = run_naive(clone(server, template, "naive"), events)
        print(f"naive (machine instance + commit per event), same events: {naive:,.0f} events/s")
        print(f"ratio engine/naive: {engine.rate / naive:.1f}x")
    if args.profile or args.statements:
        diagnose(server, template, messages_of(events), args)


def compare_sizes(server: EmbeddedPostgres, template: str, args: argparse.Namespace) -> None:
    """Engine and ceiling at 1,000 and at N preloaded connections: the cost per event each."""
    sizes = (BASELINE_PRELOADED, args.connections_preloaded)
    runs, _ = measure(server, template, sizes, args)
    small, large = sizes
    for name in LOOPS:
        for measure_name, of in (("µs/event", "micros"), ("CPU µs/event", "cpu_micros")):
            at_small, at_large = (
                statistics.median(getattr(run, of) for run in runs[name, size]) for size in sizes
            )
            growth = statistics.median(
                getattr(b, of) / getattr(a, of)
                for a, b in zip(runs[name, small], runs[name, large], strict=True)
            )
            print(
                f"{name} {measure_name}: {at_small:.1f} at {small:,} preloaded, {at_large:.1f} "
                f"at {large:,} (medians of {args.rounds} rounds of {14 * args.connections} "
                f"events): {growth:.2f}x, the median of the rounds' own (goal within "
                f"{GROWTH_GOAL:.2f}x: {'met' if growth <= GROWTH_GOAL else 'NOT met'})"
            )
    for size in sizes:
        rate, cpu = median_ratios(runs["engine", size], runs["ceiling", size])
        print(f"medians of the rounds{at(size)}: {ratio_text(rate, cpu)}")


def ratios(engine: Run, ceiling: Run) -> tuple[float, float]:
    """engine/ceiling in events/s and in CPU per event, for two runs on the same batches."""
    return engine.rate / ceiling.rate, ceiling.cpu_micros / engine.cpu_micros


def median_ratios(engine: Sequence[Run], ceiling: Sequence[Run]) -> tuple[float, float]:
    """The medians of each round's own ratios, whose two loops met the same machine, not the
    ratios of medians taken from different rounds."""
    rates, cpus = zip(*map(ratios, engine, ceiling), strict=True)
    return statistics.median(rates), statistics.median(cpus)


def ratio_text(rate: float, cpu: float) -> str:
    return f"engine/ceiling {rate:.2f} in events/s, {cpu:.2f} in CPU per event"


def median_run(runs: Sequence[Run]) -> Run:
    """The run of median wall time (the faster of the middle two of an even count)."""
    return sorted(runs, key=lambda run: run.seconds)[(len(runs) - 1) // 2]


def diagnose(
    server: EmbeddedPostgres, template: str, messages: Sequence[Message], args: argparse.Namespace
) -> None:
    """Each loop once more on its own clone, under cProfile (the costs, cumulative and self)
    or with its statements timed; never the measured runs, which neither would leave alone."""
    for name in LOOPS:
        key = (name, 0)
        urls = {key: clone(server, template, f"diagnosed_{name}")}
        if args.statements:
            with timed_statements() as times:
                run = interleaved(urls, messages, args.batch)[key]
            print(f"\n{name}, statement by statement: {run.line()}")
            print("\n".join(statement_report(times, run.events, run.seconds)))
            continue
        profile = cProfile.Profile()
        run = interleaved(urls, messages, args.batch, profile=profile)[key]
        target = args.profile.with_name(f"{args.profile.stem}.{name}{args.profile.suffix}")
        profile.dump_stats(target)
        print(f"\n{name} under cProfile: {run.line()}; stats in {target}")
        stats = pstats.Stats(profile).strip_dirs()
        for order in ("cumulative", "tottime"):
            print(f"-- {name}, top {PROFILE_TOP} by {order}")
            stats.sort_stats(order).print_stats(PROFILE_TOP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections-preloaded", type=int, default=0, metavar="N")
    parser.add_argument(
        "--rounds", type=int, help="1, or 3 with --connections-preloaded; medians reported"
    )
    parser.add_argument("--skip-naive", action="store_true", help="it takes minutes")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="FILE.engine, FILE.ceiling")
    parser.add_argument("--statements", action="store_true", help="time each statement")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 3 if args.connections_preloaded else 1
    if args.connections_preloaded and (args.profile or args.statements):
        parser.error("--profile and --statements run with the default loops only")
    if args.profile and args.statements:
        parser.error("one of --profile and --statements: each disturbs the other")
    if args.profile and not args.profile.parent.is_dir():
        parser.error(f"--profile {args.profile}: {args.profile.parent} is not a directory")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pg") as server:
        template = migrated(server)
        settle_after_start(args.batch)
        if args.connections_preloaded:
            compare_sizes(server, template, args)
        else:
            compare_loops(server, template, args)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
