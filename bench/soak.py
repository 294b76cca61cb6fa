"""A long run through the whole service: does anything grow with the number of events?

    python -m bench.soak [--events 1000000] [--every 100000] [--rate 400]
                         [--connections 20000] [--set NAME=VALUE ...]

Starts EmbeddedPostgres and EmbeddedKafka (Tansu) and the real service as a `syncstatus run`
subprocess (bench.pipeline's pieces), with short retention: outbox and idempotency keys kept
5 s, a prune every second. It then publishes `--events` events with the project's
EventPublisher, paced at `--rate` events/s, and reads the status topic from a separate spawned
process that matches each StatusChanged record to its event by `cause_event_id`.

The connections are a steady population (see Rounds): they go Authorization → Synced (the 14
events of tests/helpers/streams.FLOW) and authorize again in a new session, round after
round. So `connections` and `connection_view` keep one row per connection while
`status_history` grows by one row per event and `connection_sessions` by one per session:
they are the audit trail (and the change feed's catch-up), and retention never prunes them.
`outbox` and `processed_events` must stay near rate × retention whatever the number of
events. Every `--every` events the run prints, for that slice: events/s end to end (its
status records over the time from its first to its last) beside the rate it was offered at,
p50/p99 from `publish` to the status record (and p99 to the engine's decision, recorded_at,
which tells the consumer's share from the relay's), the service's own apply time per event
and batch size (from its syncstatus_apply_seconds and syncstatus_batch_size: PostgreSQL and
the engine, whatever the broker does), the service's RSS, who used the CPU
(bench.pipeline.Cpu; `other` is the machine's other load), then the row counts and
pg_total_relation_size of the service's tables, taken when the slice's last record arrived.

The verdict at the end holds the run to these goals: the service's RSS at the last report
within 10% of the first; the last slice's p99 within 20% of the first slice's; outbox and
processed_events bounded (over the later half of the reports against the earlier half, the
median rows and the largest size at most 1.5x: rows swing with the service's pace, as a
backlog being caught up fills the retention window at the catching-up rate); every status
record received
exactly once (one per event; a doubled record, a repeated or skipped sequence number of a
connection, or a dead letter fails it). The first report has to come well after the
retention window (every / rate ≫ 6 s), or the bounded tables are still filling and their
bytes grow until autovacuum has space to reuse: short runs are for trying the bench, not for
the verdict.

Why 400 events/s by default: the latency only means something while the service keeps up;
past that it measures the length of a queue. On this two-core machine, shared with other
runs, the service delivered 500-750 events/s end to end in this bench when offered 3,000/s
(the publisher, the reader and Tansu use about half a core beside it), and fell behind at
500/s whenever the machine's other load rose; bench.engine measured 2,518 events/s for the
engine alone in the same hour, a third of stack-limits.md's figure. 400/s leaves it room,
and 1,000,000 events take about 42 minutes. Where the service has more room pass a higher
`--rate`: each slice's events/s shows whether it kept up (1.00x the offered rate).

Every `--tick-ms` (20) the run publishes the events due by then, each stamped as it is handed
to `EventPublisher.publish`, so the tick shapes the load, not the latency measured. Not
bench.pipeline's 5 ms: every tick costs a produce request, and at 400/s publishing took 49%
of a core with 5 ms ticks against 28% with 20 ms (1.2 and 0.7 ms of CPU per event), on the
two cores the service, PostgreSQL and Tansu share.

The broker is part of what is measured, and Tansu 0.6.0 (memory-only, no retention) costs
more CPU per record as a topic fills: 800 records/s produced and read took 38% of a core on
an empty topic and 82% once the topic held 500,000 more records (16 partitions: 45% and
89%). In a run of 1,000,000 events at 400/s Tansu went from 28% to 83% of a core while the
service's own apply time per event fell (1,043 to 356 µs, in larger batches) and the machine
had a core to spare, so the latency drift of a long run on Tansu is the broker's. Real Kafka's
cost per record does not grow with its log (docker-compose.yml).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import random
import re
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
import psycopg
from tests.helpers.streams import FLOW

import bench.pipeline as pipeline
from bench.pipeline import TANSU_CONSUMER, Cpu, ServiceProcess, parse_overrides, percentile, workdir
from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from syncstatus.kafka import client_config, ensure_topics, family_topics
from syncstatus.producers.publisher import EventPublisher
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, SessionEvent, Substage

RETENTION = {
    "outbox_retention_s": "5",
    "idempotency_retention_s": "5",
    "webhook_log_retention_s": "5",
    "prune_interval_s": "1",
}
TABLES = (
    "outbox",
    "processed_events",
    "status_history",
    "connection_sessions",
    "connection_activity",
    "connection_view",
    "connections",
    "parked_events",
    "dead_letters",
    "commands",
)
BOUNDED = ("outbox", "processed_events")
RSS_GOAL = 1.10  # last report / first report
P99_GOAL = 1.20  # last slice / first slice
GROWTH_LIMIT = 1.5  # bounded tables: later half of the reports / earlier half
WARMUP_CONNECTIONS = 50


def service_values(prefix: str, postgres_url: str, bootstrap: str) -> dict[str, str]:
    """The settings bench.pipeline gives the service, on topics and a group named by prefix."""
    return {
        "database_url": postgres_url,
        "bootstrap_servers": bootstrap,
        "topic_auth": f"{prefix}.auth",
        "topic_webhooks": f"{prefix}.webhooks",
        "topic_pipeline": f"{prefix}.pipeline",
        "topic_status": f"{prefix}.status",
        "topic_dead_letter": f"{prefix}.dead-letter",
        "topic_commands": f"{prefix}.commands",
        "consumer_group": f"{prefix}.syncstatus",
        "log_level": "WARNING",
        "metrics_port": str(free_port()),
        **TANSU_CONSUMER,
    }


# --- the events ------------------------------------------------------------------------------


class Rounds:
    """Event i of an endless stream of whole sessions over a fixed set of connections.

    The connections are two halves that take turns: round r is a new session of every
    connection of half r mod 2, Authorization → Synced, step k of every one before step k+1
    of any. So a connection rests at Synced for a whole round (7 × connections / rate
    seconds) before it authorizes again, and a new session never overtakes the end of the
    previous one on the other input topic (it would be refused as superseded) unless the
    service falls that far behind. occurred_at is taken when the event is made, just before
    it is published, so a connection's stamps always increase."""

    def __init__(self, prefix: str, connections: int) -> None:
        self.prefix = prefix
        self.half = max(1, connections // 2)
        self._substages = list(Substage)
        self._first_substage = FLOW.index(EventType.PROCESSING_SUBSTAGE_COMPLETED)
        # uuid4 reads os.urandom, the costliest step of making an event on a busy machine.
        self._random = random.Random(uuid.uuid4().int)

    def event(self, i: int) -> SessionEvent:
        round_, rest = divmod(i, len(FLOW) * self.half)
        step, j = divmod(rest, self.half)
        c = (round_ % 2) * self.half + j
        kind = FLOW[step]
        return SessionEvent(
            event_id=uuid.UUID(int=self._random.getrandbits(128), version=4),
            type=kind,
            connection_id=f"{self.prefix}-{c}",
            session_id=f"{self.prefix}-{c}-r{round_}",
            app="facebook_ads",
            occurred_at=datetime.now(UTC),
            producer="bench.soak",
            substage=self._substages[step - self._first_substage]
            if kind is EventType.PROCESSING_SUBSTAGE_COMPLETED
            else None,
        )


# --- the status-topic reader (its own process) ----------------------------------------------


def _reader_main(
    kafka_config: dict[str, Any],
    status_topic: str,
    dead_letter_topic: str,
    pipe: multiprocessing.connection.Connection,
) -> None:
    """Send (cause_event_id, arrival, engine decision) batches every 50 ms, on the monotonic
    clock (the decision is the record's recorded_at, the engine's clock at the start of its
    batch); count each connection's sequence numbers seen twice (duplicates) or skipped
    (gaps); at "stop", send the last batch and the counts."""
    from kafka import KafkaConsumer

    from syncstatus.schemas.messages import StatusChangeMessages

    messages = StatusChangeMessages()
    # A fetch wait of 50 ms, not bench.pipeline's 10: the broker answers as soon as records
    # come, so latency is the same, and an idle reader costs half the CPU (about 12% of a core
    # against 25% here, Tansu's share falling too), CPU the service shares on two cores.
    consumer = KafkaConsumer(**kafka_config, enable_auto_commit=False, fetch_max_wait_ms=50)
    pipeline.assign_all(consumer, (status_topic, dead_letter_topic))
    consumer.poll(timeout_ms=50)
    clock_offset = time.time() - time.monotonic()  # wall → monotonic, for recorded_at
    pipe.send("ready")
    last: dict[str, int] = {}
    counts = {"records": 0, "duplicates": 0, "gaps": 0, "dead_letters": 0}
    batch: list[tuple[str, float, float]] = []
    sent_at = time.monotonic()
    try:
        while not pipe.poll():
            polled = consumer.poll(timeout_ms=20)
            now = time.monotonic()
            for tp, records in polled.items():
                if tp.topic != status_topic:
                    counts["dead_letters"] += len(records)
                    continue
                for record in records:
                    change = messages.decode(record.value)
                    decided = change["recorded_at"].timestamp() - clock_offset
                    batch.append((str(change["cause_event_id"]), now, decided))
                    previous = last.get(change["connection_id"], 0)
                    sequence = change["sequence"]
                    counts["records"] += 1
                    counts["duplicates"] += sequence <= previous
                    counts["gaps"] += sequence > previous + 1
                    last[change["connection_id"]] = max(previous, sequence)
            if batch and now - sent_at > 0.05:
                pipe.send(batch)
                batch, sent_at = [], now
        pipe.recv()
        pipe.send(batch)
        pipe.send(counts)
    finally:
        consumer.close()


class Reader:
    """Handle on the reader process."""

    def __init__(self, settings: Settings) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=_reader_main,
            args=(
                client_config(settings),
                settings.topic_status,
                settings.topic_dead_letter,
                child,
            ),
            name="soak-reader",
            daemon=True,
        )
        self.process.start()
        if not self._pipe.poll(30) or self._pipe.recv() != "ready":
            raise RuntimeError("the status reader did not start")

    def drain(self) -> list[tuple[str, float, float]]:
        arrivals: list[tuple[str, float, float]] = []
        while self._pipe.poll():
            arrivals += self._pipe.recv()
        return arrivals

    def stop(self) -> tuple[list[tuple[str, float, float]], dict[str, int]]:
        self._pipe.send("stop")
        arrivals: list[tuple[str, float, float]] = []
        while True:
            if not self._pipe.poll(60):
                raise RuntimeError("the status reader did not answer")
            message = self._pipe.recv()
            if isinstance(message, dict):
                self.process.join(10)
                return arrivals, message
            arrivals += message

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --- what is measured -------------------------------------------------------------------------


def table_sizes(url: str) -> dict[str, tuple[int, int]]:
    """Rows and pg_total_relation_size of each table, in one statement."""
    columns = ", ".join(
        f"(SELECT count(*) FROM {t}), pg_total_relation_size('{t}')" for t in TABLES
    )
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        row = connection.execute(f"SELECT {columns}").fetchone()
    assert row is not None
    return {t: (row[2 * i], row[2 * i + 1]) for i, t in enumerate(TABLES)}


APPLY_METRICS = (
    "syncstatus_apply_seconds_sum",
    "syncstatus_apply_seconds_count",
    "syncstatus_batch_size_sum",
)


def scrape(port: int) -> dict[str, float]:
    """The service's own time to decide and commit its batches (`syncstatus_apply_seconds`)
    and the events in them: what PostgreSQL and the engine cost, whatever the broker does."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found = {}
    for name in APPLY_METRICS:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        if match:
            found[name] = float(match.group(1))
    return found


def apply_cost(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """µs of apply per event, and events per batch, between two scrapes (NaN without both)."""
    seconds, batches, events = (
        after.get(name, math.nan) - before.get(name, math.nan) for name in APPLY_METRICS
    )
    if not events or not batches:
        return math.nan, math.nan
    return 1e6 * seconds / events, events / batches


@dataclass
class Slice:
    """The events of one report, from their publish to their status records."""

    index: int
    expected: int
    first_sent: float = math.inf
    last_sent: float = 0.0
    first_arrival: float = math.inf
    last_arrival: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    to_engine_ms: list[float] = field(default_factory=list)  # publish → engine decision
    cpu: Cpu | None = None  # who used the CPU from its first publish to its report
    metrics: dict[str, float] = field(default_factory=dict)  # the service's, at its start

    @property
    def complete(self) -> bool:
        return len(self.latencies_ms) >= self.expected


@dataclass
class Report:
    """What one report line says, kept for the verdict."""

    events: int
    rate: float
    offered: float
    p50_ms: float
    p99_ms: float
    p99_engine_ms: float
    apply_us: float  # the service's apply time per event (syncstatus_apply_seconds)
    batch: float  # events per applied batch
    rss: int
    tables: dict[str, tuple[int, int]]


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Pending:
    """A report waiting for its table sizes (counted in a thread: psycopg lets go of the GIL
    while the server counts, so the publisher keeps its pace)."""

    slice: Slice
    rss: int
    cpu: str
    apply: tuple[float, float]
    sizes: concurrent.futures.Future[dict[str, tuple[int, int]]]


class Soak:
    """Publish, match status records to events, and report slice after slice."""

    def __init__(self, args: argparse.Namespace, publisher: EventPublisher, url: str) -> None:
        self.args = args
        self.publisher = publisher
        self.url = url
        self.service_pid = 0
        self.metrics_port = 0
        self.processes: dict[str, Callable[[], list[psutil.Process]]] = {}
        self.sent: dict[str, tuple[int, float]] = {}  # event id → (slice, publish time)
        self.slices: dict[int, Slice] = {}
        self.reports: list[Report] = []
        self.unmatched = 0  # status records of no event still waited for: doubles
        self._next = 0
        self._waiting: list[Pending] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(1)

    def slice_of(self, i: int) -> int:
        return i // self.args.every

    def publish(self, event: SessionEvent, index: int) -> None:
        part = self.slices.get(index)
        if part is None:
            size = min(self.args.every, self.args.events - index * self.args.every)
            part = self.slices[index] = Slice(index, size if index >= 0 else 0)
            part.cpu = Cpu(self.processes)
            part.cpu.start()
            part.metrics = scrape(self.metrics_port)
        if index < 0:
            part.expected += 1
        now = time.monotonic()
        self.sent[str(event.event_id)] = (index, now)
        part.first_sent = min(part.first_sent, now)
        part.last_sent = now
        self.publisher.publish(event)

    def take(self, arrivals: list[tuple[str, float, float]]) -> None:
        for event_id, arrived, decided in arrivals:
            found = self.sent.pop(event_id, None)
            if found is None:
                self.unmatched += 1
                continue
            part = self.slices[found[0]]
            part.latencies_ms.append(1000 * (arrived - found[1]))
            part.to_engine_ms.append(1000 * (decided - found[1]))
            part.first_arrival = min(part.first_arrival, arrived)
            part.last_arrival = max(part.last_arrival, arrived)

    def close_slices(self, published: int, now: float) -> None:
        """A slice is reported once all of it was published and came back (or timed out)."""
        while (part := self.slices.get(self._next)) is not None:
            end = min(self.args.events, (part.index + 1) * self.args.every)
            # Given up only when none of its records came for `timeout` s: a service behind
            # but moving is waited for.
            timed_out = now - max(part.last_sent, part.last_arrival) > self.args.timeout
            if published < end or not (part.complete or timed_out):
                return
            cpu = part.cpu.report() if part.cpu is not None else ""
            rss = 0
            with contextlib.suppress(psutil.NoSuchProcess):
                rss = psutil.Process(self.service_pid).memory_info().rss
            sizes = self._pool.submit(table_sizes, self.url)
            applied = apply_cost(part.metrics, scrape(self.metrics_port))
            self._waiting.append(Pending(part, rss, cpu, applied, sizes))
            self._next += 1

    def open(self) -> bool:
        return self._next < len([k for k in self.slices if k >= 0]) or bool(self._waiting)

    def print_ready(self) -> None:
        while self._waiting and self._waiting[0].sizes.done():
            pending = self._waiting.pop(0)
            self.reports.append(self._report(pending))
            print_report(self.reports, pending.cpu, pending.slice)

    def _report(self, pending: Pending) -> Report:
        part = pending.slice
        got = len(part.latencies_ms)
        lat = sorted(part.latencies_ms) or [math.nan]
        return Report(
            events=min(self.args.events, (part.index + 1) * self.args.every),
            rate=got / max(part.last_arrival - part.first_arrival, 1e-9),
            offered=part.expected / max(part.last_sent - part.first_sent, 1e-9),
            p50_ms=percentile(lat, 50),
            p99_ms=percentile(lat, 99),
            p99_engine_ms=percentile(sorted(part.to_engine_ms) or [math.nan], 99),
            apply_us=pending.apply[0],
            batch=pending.apply[1],
            rss=pending.rss,
            tables=pending.sizes.result(),
        )

    def close(self) -> None:
        self._pool.shutdown()


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


def print_report(reports: list[Report], cpu: str, part: Slice) -> None:
    r, first = reports[-1], reports[0]
    got = len(part.latencies_ms)
    lost = "" if got >= part.expected else f"; {part.expected - got:,} NOT BACK within the timeout"
    print(
        f"{r.events:>10,} events: {r.rate:,.0f} events/s end to end ({r.rate / r.offered:.2f}x "
        f"the {r.offered:,.0f}/s offered), p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms "
        f"({r.p99_ms / first.p99_ms:.2f}x first; p99 publish → engine decision "
        f"{r.p99_engine_ms:.1f} ms), apply {r.apply_us:.0f} µs/event in batches of "
        f"{r.batch:.0f} ({r.apply_us / first.apply_us:.2f}x first), service RSS {mb(r.rss)} "
        f"({r.rss / first.rss:.2f}x first); {cpu}{lost}",
        flush=True,
    )
    tables = ", ".join(
        f"{name} {rows:,}/{mb(size)}"
        + (
            f" ({rows / max(first.tables[name][0], 1):.2f}x)"
            if name in BOUNDED + ("status_history",)
            else ""
        )
        for name, (rows, size) in r.tables.items()
    )
    print(f"            rows/size (x first report): {tables}", flush=True)


def pace(soak: Soak, rounds: Rounds, service: ServiceProcess, reader: Reader) -> None:
    """Event i is due at start + i / rate; every tick publish what is due, match what came
    back and print the reports that are complete."""
    rate, total, tick = soak.args.rate, soak.args.events, soak.args.tick_ms / 1000
    start = time.monotonic()
    i = 0
    while i < total or soak.open():
        now = time.monotonic()
        due = min(total, math.floor((now - start) * rate) + 1)
        while i < due:
            soak.publish(rounds.event(i), soak.slice_of(i))
            i += 1
        soak.take(reader.drain())
        soak.close_slices(i, now)
        soak.print_ready()
        service.check_alive()
        next_tick = max(now + tick, start + i / rate) if i < total else now + tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    soak.publisher.flush()


def warm_up(soak: Soak, prefix: str, service: ServiceProcess, reader: Reader) -> None:
    """The group join, the relay's producer and the pools, before anything is measured."""
    rounds = Rounds(f"{prefix}-warm", WARMUP_CONNECTIONS)
    for i in range(WARMUP_CONNECTIONS * len(FLOW)):
        soak.publish(rounds.event(i), -1)
    soak.publisher.flush()
    deadline = time.monotonic() + 120
    while not soak.slices[-1].complete:
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up: the status records did not come back within 120 s")
        service.check_alive()
        soak.take(reader.drain())
        time.sleep(0.01)


def cpu_processes(
    postgres: EmbeddedPostgres, children: dict[str, int]
) -> dict[str, Callable[[], list[psutil.Process]]]:
    """What bench.pipeline.Cpu samples: each process this run started, and PostgreSQL's."""
    processes = {name: pipeline._one(pid) for name, pid in children.items()}
    return {**processes, "bench": pipeline._one(os.getpid())} | {
        "postgres": pipeline._postgres_processes(postgres)
    }


def bounded(reports: list[Report], name: str) -> tuple[bool, str]:
    """Not growing with the events: the later half of the reports against the earlier half,
    the median of the rows (they swing with the service's pace: a backlog being caught up
    fills the retention window at the catching-up rate) and the largest size (a table's
    pages are kept for reuse, so its size only ever grows)."""
    half = max(1, len(reports) // 2)
    early, late = reports[:half], reports[half:] or reports[-1:]
    rows0, rows1 = (statistics.median(r.tables[name][0] for r in part) for part in (early, late))
    size0, size1 = (max(r.tables[name][1] for r in part) for part in (early, late))
    growth = (rows1 / max(rows0, 1), size1 / max(size0, 1))
    return (
        max(growth) <= GROWTH_LIMIT,
        f"{name} bounded: median {rows1:,.0f} rows, at most {mb(size1)} in reports "
        f"{half + 1}-{len(reports)} (to {late[-1].events:,} events) vs {rows0:,.0f} and "
        f"{mb(size0)} in reports 1-{half} (to {early[-1].events:,}): {growth[0]:.2f}x rows, "
        f"{growth[1]:.2f}x size (goal ≤ {GROWTH_LIMIT}x)",
    )


def goals(soak: Soak, counts: dict[str, int]) -> list[tuple[bool, str]]:
    first, last = soak.reports[0], soak.reports[-1]
    rss, p99 = last.rss / first.rss, last.p99_ms / first.p99_ms
    met = [
        (
            rss <= RSS_GOAL,
            f"service RSS {mb(last.rss)} at {last.events:,} events vs {mb(first.rss)} at "
            f"{first.events:,}: {rss:.2f}x (goal ≤ {RSS_GOAL:.2f}x)",
        ),
        (
            p99 <= P99_GOAL,
            f"p99 {last.p99_ms:.1f} ms in the last slice vs {first.p99_ms:.1f} ms in the "
            f"first: {p99:.2f}x (goal ≤ {P99_GOAL:.2f}x)",
        ),
    ]
    met += [bounded(soak.reports, name) for name in BOUNDED]
    expected = soak.args.events + WARMUP_CONNECTIONS * len(FLOW)
    records, lost = counts.get("records", 0), len(soak.sent)
    repeats, gaps = counts.get("duplicates", 0), counts.get("gaps", 0)
    ok = records == expected and not (lost or soak.unmatched or repeats or gaps)
    met.append(
        (
            ok,
            f"status records: {records:,} received for {expected:,} events "
            f"({WARMUP_CONNECTIONS * len(FLOW)} of them warm-up): {lost:,} lost, "
            f"{soak.unmatched:,} doubled (no event waiting for them), {repeats:,} repeated and "
            f"{gaps:,} skipped sequence numbers; {counts.get('dead_letters', 0):,} dead letters",
        )
    )
    return met


def verdict(soak: Soak, counts: dict[str, int]) -> bool:
    if not soak.reports:
        print("verdict: FAIL: no slice was reported")
        return False
    met = goals(soak, counts)
    for ok, text in met:
        print(f"verdict: {'PASS' if ok else 'FAIL'}: {text}")
    first, last = soak.reports[0], soak.reports[-1]
    print(
        f"context (not a goal): the service's apply time {last.apply_us:.0f} µs/event in the "
        f"last slice vs {first.apply_us:.0f} in the first ({last.apply_us / first.apply_us:.2f}x"
        "); latency it does not explain went to Kafka (broker, fetch, relay) or to waiting for "
        "a core"
    )
    rows, size = soak.reports[-1].tables["status_history"]
    print(
        f"summary: {'PASS' if all(ok for ok, _ in met) else 'FAIL'}: "
        f"{sum(ok for ok, _ in met)} of {len(met)} goals met; status_history holds {rows:,} "
        f"rows ({mb(size)}): the audit trail, one row per status change, never pruned"
    )
    return all(ok for ok, _ in met)


def run(args: argparse.Namespace) -> int:
    prefix = f"s{uuid.uuid4().hex[:6]}"
    with (
        workdir(args.workdir) as work,
        EmbeddedPostgres(work / "pg") as postgres,
        EmbeddedKafka(log_file=work / "tansu.log") as kafka,
    ):
        tuned = {**RETENTION, **parse_overrides(args.set)}
        values = {**service_values(prefix, postgres.url, kafka.bootstrap_servers), **tuned}
        settings = Settings(**values)
        ensure_topics(settings)
        reader = Reader(settings)
        publisher = EventPublisher(client_config(settings), family_topics(settings))
        soak = Soak(args, publisher, postgres.url)
        children = {"tansu": kafka._process.pid if kafka._process else 0}
        children["reader"] = reader.process.pid or 0
        service: ServiceProcess | None = None
        counts: dict[str, int] = {}
        try:
            started = time.monotonic()
            service = ServiceProcess(values, work / "service.log")
            soak.service_pid = children["service"] = service.pid
            soak.processes = cpu_processes(postgres, children)
            soak.metrics_port = int(values["metrics_port"])
            warm_up(soak, prefix, service, reader)
            print(
                f"ready in {time.monotonic() - started:.1f} s: {args.events:,} events at "
                f"{args.rate:,.0f}/s over {args.connections:,} connections, a report every "
                f"{args.every:,}; settings: {', '.join(f'{k}={v}' for k, v in tuned.items())}",
                flush=True,
            )
            pace(soak, Rounds(prefix, args.connections), service, reader)
            time.sleep(2)  # a record sent twice would come now
            soak.take(reader.drain())
        finally:
            publisher.close()
            code = service.stop() if service is not None else None
            try:
                if reader.process.is_alive():
                    arrivals, counts = reader.stop()
                    soak.take(arrivals)
            finally:
                reader.close()
                soak.close()
        met = verdict(soak, counts)
        problems = pipeline._log_problems(work / "service.log")
        print(f"service: exit code {code}; {len(problems)} warning/error lines in its log")
        for line in problems[:5]:
            print(f"  {line[:300]}")
    print(f"left running: {', '.join(pipeline._still_running(children)) or 'nothing'}")
    return 0 if met else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events to send")
    parser.add_argument("--every", type=int, default=100_000, help="events per report")
    parser.add_argument("--rate", type=float, default=400, help="events/s offered")
    parser.add_argument("--connections", type=int, default=20_000, help="steady population")
    parser.add_argument(
        "--tick-ms", type=float, default=20, help="publish what is due every tick (see above)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting (as SYNCSTATUS_NAME), repeatable; overrides the retention",
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="seconds a slice's records may take"
    )
    parser.add_argument("--workdir", help="keep data and logs here instead of a temp dir")
    args = parser.parse_args()
    if args.rate <= 0 or args.every <= 0 or args.events <= 0:
        parser.error("--rate, --every and --events must be positive")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
