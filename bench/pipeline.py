"""End to end through Kafka: publish → consumer → PostgreSQL → outbox relay → status topic.

    python -m bench.pipeline [--connections 2000] [--rate 1000] [--duration 12] [--runs 5]
                             [--service process|thread] [--set relay_idle_s=0.01 ...]

Starts its own EmbeddedPostgres (in a temp dir) and EmbeddedKafka (Tansu), then the real
service on them, and measures two things from `EventPublisher.publish` to the StatusChanged
record (matched by `cause_event_id`) arriving on the status topic:

1. throughput: every connection goes Authorization → Synced (14 events, the `bench.engine`
   flow, step k of every connection before step k+1 of any), published as fast as possible;
   events/s = events / (first publish → last status change received);
2. latency at a fixed offered load: the same flow paced at `--rate` events/s for `--duration`
   seconds, round-robin over enough connections that a connection's next event comes about
   `connections / rate` seconds after its previous one; p50/p95/p99/max per event.

How the service runs (`--service`): by default as a `syncstatus run` subprocess configured
with SYNCSTATUS_* variables, because that is how it runs in production and because it gives
the service a GIL of its own: in a thread it would share this interpreter with the publisher
(encoding and kafka-python's sender thread), and every millisecond the publisher holds the GIL
would be charged to the service. `--service thread` runs `build` + `build_service` +
`service.run(handle_signals=False)` in a thread here instead, for comparison or profiling
(`--profile FILE` writes a cProfile of every service thread). Either way the service logs to
service.log in the work dir (`--workdir` keeps it), and the run ends by counting the warning
and error lines there, the dead letters, and any process it started that is still alive.

The goals are issue 15's: at least 9,000 events/s end to end, and p99 at most 50 ms at
1,000 events/s offered, in every run: `--runs 5` makes five consecutive runs, each on new
servers, prints each, and ends with a line of all five.

The paced phase publishes, every `--tick-ms` (5 ms, the publisher's linger), the events due
by then; each event's publish time is taken when it is handed to `EventPublisher.publish`.

The status-topic reader is a separate process (spawned, not forked): it assigns every
partition without a consumer group, reads from the beginning, takes one monotonic timestamp
per poll as the arrival time of everything that poll returned (CLOCK_MONOTONIC is system
wide, so it compares with the publish times taken here), and keeps the first arrival per
cause_event_id (a relay may resend after a failure). Its fetch wait is 10 ms so that the
reader itself adds little to the latency it measures.

The service gets Tansu-friendly consumer settings (session timeout 2000 ms, heartbeat
500 ms); everything else is the service's defaults unless changed with `--set NAME=VALUE`
(any Settings field). A warm-up of a few connections runs first, so the group join, the
relay's producer and the connection pools are not charged to the measured phases.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import structlog
from tests.helpers.streams import FLOW, stream

from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from syncstatus.kafka import client_config, ensure_topics, family_topics
from syncstatus.producers.publisher import EventPublisher
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, SessionEvent

E = EventType
THROUGHPUT_GOAL = 9000.0  # events/s
P99_GOAL_MS = 50.0
SERVICE_COMMAND = [sys.executable, "-m", "syncstatus.cli", "run"]  # what `syncstatus run` runs
TANSU_CONSUMER = {"kafka_session_timeout_ms": "2000", "kafka_heartbeat_interval_ms": "500"}


# --- the events ------------------------------------------------------------------------------


def flow_events(prefix: str, connections: int, start: datetime) -> list[SessionEvent]:
    return stream(connections, prefix, start, "bench.pipeline")


# --- the status-topic reader (its own process) ----------------------------------------------


def assign_all(consumer: Any, topics: tuple[str, ...]) -> None:
    """Every partition of `topics`, from the beginning, without a group (waiting up to 10 s
    for each topic to appear)."""
    from kafka import TopicPartition

    partitions = []
    for topic in topics:
        deadline = time.monotonic() + 10
        found = consumer.partitions_for_topic(topic)
        while not found and time.monotonic() < deadline:
            time.sleep(0.05)
            found = consumer.partitions_for_topic(topic)
        if not found:
            raise RuntimeError(f"topic {topic} does not exist")
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)


def _reader_main(
    kafka_config: dict[str, Any],
    status_topic: str,
    dead_letter_topic: str,
    pipe: multiprocessing.connection.Connection,
    seen: Any,
    dead_letters: Any,
) -> None:
    """Record the first arrival time of each cause_event_id until told to stop."""
    from kafka import KafkaConsumer

    from syncstatus.schemas.messages import StatusChangeMessages

    messages = StatusChangeMessages()
    consumer = KafkaConsumer(**kafka_config, enable_auto_commit=False, fetch_max_wait_ms=10)
    assign_all(consumer, (status_topic, dead_letter_topic))
    consumer.poll(timeout_ms=50)
    clock_offset = time.time() - time.monotonic()  # wall → monotonic, for recorded_at
    pipe.send("ready")
    arrivals: dict[str, tuple[float, float]] = {}
    refused: list[dict[str, str]] = []
    try:
        while not pipe.poll():
            polled = consumer.poll(timeout_ms=20)
            now = time.monotonic()
            for tp, records in polled.items():
                if tp.topic == status_topic:
                    for record in records:
                        change = messages.decode(record.value)
                        arrivals.setdefault(
                            str(change["cause_event_id"]),
                            (now, change["recorded_at"].timestamp() - clock_offset),
                        )
                else:
                    for record in records:
                        headers = {k: v.decode(errors="replace") for k, v in record.headers or []}
                        refused.append(headers)
            seen.value = len(arrivals)
            dead_letters.value = len(refused)
        pipe.recv()
        pipe.send((arrivals, refused))
    finally:
        consumer.close()


class StatusReader:
    """Handle on the reader process."""

    def __init__(self, settings: Settings) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.seen = context.Value("q", 0, lock=False)
        self.dead_letters = context.Value("q", 0, lock=False)
        self.process = context.Process(
            target=_reader_main,
            args=(
                client_config(settings),
                settings.topic_status,
                settings.topic_dead_letter,
                child,
                self.seen,
                self.dead_letters,
            ),
            name="status-reader",
            daemon=True,
        )
        self.process.start()
        if not self._pipe.poll(30) or self._pipe.recv() != "ready":
            raise RuntimeError("the status reader did not start")

    def wait_for(self, count: int, timeout_s: float, alive: Callable[[], None]) -> bool:
        """Until `count` distinct status changes were seen; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.seen.value < count:
            if time.monotonic() > deadline:
                return False
            alive()
            time.sleep(0.005)
        return True

    def collect(self) -> tuple[dict[str, float], list[dict[str, str]]]:
        self._pipe.send("stop")
        if not self._pipe.poll(60):
            raise RuntimeError("the status reader did not answer")
        arrivals, refused = self._pipe.recv()
        self.process.join(10)
        return arrivals, refused

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --- the service ----------------------------------------------------------------------------


class ServiceProcess:
    """`syncstatus run` as a child process, configured through SYNCSTATUS_* variables."""

    def __init__(self, values: dict[str, str], log_file: Path) -> None:
        env = {**os.environ, **{f"SYNCSTATUS_{k.upper()}": v for k, v in values.items()}}
        self.log_file = log_file
        with log_file.open("ab") as out:
            self.process = subprocess.Popen(
                SERVICE_COMMAND,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the service exited with {self.process.returncode}:\n{_tail(self.log_file)}"
            )

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class ServiceThread:
    """`build` + `build_service` + `service.run(handle_signals=False)` in a thread here."""

    def __init__(self, values: dict[str, str], log_file: Path, profile: Path | None) -> None:
        from syncstatus.bootstrap import build, build_service
        from syncstatus.runtime.logs import configure_logging

        settings = Settings(**values)
        configure_logging(settings.log_level, settings.log_json)
        self.log_file = log_file
        self._log = log_file.open("a")
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(self._log))
        self.pid = os.getpid()
        self._profile = profile
        self._profiles: list[cProfile.Profile] = []
        self.application = build(settings)
        self.service = build_service(self.application)
        if profile is not None:
            for index, loop in enumerate(self.service.loops):
                self.service.loops[index] = type(loop)(loop.name, self._profiled(loop.run))
        self._code: int | None = None
        self.thread = threading.Thread(target=self._run, name="service", daemon=True)
        self.thread.start()

    def _profiled(self, run: Callable[[threading.Event], None]) -> Callable[..., None]:
        def profiled(stop: threading.Event) -> None:
            profile = cProfile.Profile()
            self._profiles.append(profile)
            profile.runcall(run, stop)

        return profiled

    def _run(self) -> None:
        self._code = self.service.run(handle_signals=False)

    def check_alive(self) -> None:
        if not self.thread.is_alive():
            raise RuntimeError(f"the service stopped with {self._code}")

    def stop(self) -> int | None:
        self.service.stop.set()
        self.thread.join(30)
        self.application.close()
        if self._profile is not None and self._profiles:
            stats = pstats.Stats(self._profiles[0])
            for profile in self._profiles[1:]:
                stats.add(profile)
            stats.dump_stats(self._profile)
        self._log.close()
        return self._code


# --- CPU accounting -------------------------------------------------------------------------


@dataclass
class Cpu:
    """CPU seconds used by each component, to see who is busy during a phase."""

    processes: dict[str, Callable[[], list[psutil.Process]]]
    _start: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0

    def _sample(self) -> dict[str, float]:
        used = {}
        for name, processes in self.processes.items():
            total = 0.0
            for process in processes():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    times = process.cpu_times()
                    total += times.user + times.system
            used[name] = total
        machine = psutil.cpu_times()
        used["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return used

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.monotonic()

    def report(self) -> str:
        """CPU per component in % of one core; `other` is everything else on the machine."""
        wall = time.monotonic() - self._wall
        end = self._sample()
        used = {name: 100 * (end[name] - self._start[name]) / wall for name in end}
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - sum(used.values()))
        parts = [f"{name} {value:.0f}%" for name, value in used.items()]
        return (
            f"cpu (% of one core; {psutil.cpu_count()} cores, {machine:.0f}% busy): "
            + ", ".join(parts)
        )


def _postgres_processes(server: EmbeddedPostgres) -> Callable[[], list[psutil.Process]]:
    def processes() -> list[psutil.Process]:
        running = server._postmaster()
        if running is None:
            return []
        try:
            postmaster = psutil.Process(running[0])
            return [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return processes


def _one(pid: int) -> Callable[[], list[psutil.Process]]:
    def processes() -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [psutil.Process(pid)]
        return []

    return processes


# --- the phases -----------------------------------------------------------------------------


def publish_fast(publisher: EventPublisher, events: list[SessionEvent]) -> dict[str, float]:
    sent = {}
    for event in events:
        sent[str(event.event_id)] = time.monotonic()
        publisher.publish(event)
    publisher.flush()
    return sent


def publish_paced(
    publisher: EventPublisher, events: list[SessionEvent], rate: float, tick_s: float
) -> dict[str, float]:
    """Every `tick_s`, publish the events due by then: event i is due at start + i / rate.

    A tick of the publisher's linger (5 ms) puts the same events in the same producer batches
    as pacing one by one would, and costs this process (on the same two cores as the service)
    a third less CPU than a wake-up per event.
    """
    sent = {}
    start = time.monotonic()
    i = 0
    while i < len(events):
        now = time.monotonic()
        due = min(len(events), math.floor((now - start) * rate) + 1)
        while i < due:
            event = events[i]
            sent[str(event.event_id)] = time.monotonic()
            publisher.publish(event)
            i += 1
        next_tick = max(now + tick_s, start + i / rate)
        time.sleep(max(0.0, next_tick - time.monotonic()))
    publisher.flush()
    return sent


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _log_problems(path: Path) -> list[str]:
    if not path.exists():
        return []
    words = ("warning", "error", "exception", "traceback", "critical")
    return [
        line
        for line in path.read_text(errors="replace").splitlines()
        if any(word in line.lower() for word in words)
    ]


@dataclass(frozen=True)
class Figures:
    """What a run is judged by: end-to-end events/s, p99 at the offered rate, both goals."""

    rate: float
    p99: float
    met: bool


@dataclass
class Results:
    throughput_events: int = 0
    throughput_s: float = 0.0
    publish_s: float = 0.0
    throughput_missing: int = 0
    latency_events: int = 0
    offered_rate: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    to_engine_ms: list[float] = field(default_factory=list)
    engine_to_topic_ms: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (sent, latency ms)
    latency_missing: int = 0


@contextlib.contextmanager
def workdir(path: str | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        yield Path(tmp)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in Settings.model_fields:
            raise SystemExit(f"--set wants NAME=VALUE with NAME a setting, got {pair!r}")
        values[name] = value
    return values


def run(args: argparse.Namespace) -> Figures:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    latency_connections = max(1, math.ceil(args.rate * args.duration / len(FLOW)))
    with (
        workdir(args.workdir) as work,
        EmbeddedPostgres(work / "pg") as postgres,
        EmbeddedKafka(log_file=work / "tansu.log") as kafka,
    ):
        values = {
            "database_url": postgres.url,
            "bootstrap_servers": kafka.bootstrap_servers,
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
            **parse_overrides(args.set),
        }
        settings = Settings(**values)
        ensure_topics(settings)
        reader = StatusReader(settings)
        log_file = work / "service.log"
        service: ServiceProcess | ServiceThread | None = None
        publisher = EventPublisher(client_config(settings), family_topics(settings))
        results = Results()
        children: dict[str, int] = {"tansu": kafka._process.pid if kafka._process else 0}
        if (postmaster := postgres._postmaster()) is not None:
            children["postgres"] = postmaster[0]
        children["reader"] = reader.process.pid or 0
        try:
            started = time.monotonic()
            if args.service == "process":
                service = ServiceProcess(values, log_file)
                children["service"] = service.pid
            else:
                service = ServiceThread(values, log_file, args.profile)
            cpu = Cpu(
                {
                    "service" if args.service == "process" else "bench+service": _one(service.pid),
                    "bench": _one(os.getpid()),
                    "reader": _one(reader.process.pid or 0),
                    "postgres": _postgres_processes(postgres),
                    "tansu": _one(kafka._process.pid if kafka._process else 0),
                }
            )
            if args.service == "thread":
                del cpu.processes["bench"]
            expected = 0

            # Warm-up: the group join, the relay's producer, pools and caches.
            warmup = flow_events(f"{prefix}-warm", args.warmup, datetime.now(UTC))
            publish_fast(publisher, warmup)
            expected += len(warmup)
            if not reader.wait_for(expected, args.timeout, service.check_alive):
                raise RuntimeError(
                    f"warm-up: {reader.seen.value} of {expected} status changes within "
                    f"{args.timeout} s\n{_tail(log_file)}"
                )
            tuned = {**TANSU_CONSUMER, **parse_overrides(args.set)}
            print(
                f"ready: service up and warm-up of {len(warmup)} events done in "
                f"{time.monotonic() - started:.1f} s ({args.service} mode; settings other "
                f"than defaults: {', '.join(f'{k}={v}' for k, v in tuned.items())})",
                flush=True,
            )

            # 1. Throughput.
            events = flow_events(f"{prefix}-tp", args.connections, datetime.now(UTC))
            cpu.start()
            first = time.monotonic()
            throughput_sent = publish_fast(publisher, events)
            results.publish_s = time.monotonic() - first
            expected += len(events)
            if not reader.wait_for(expected, args.timeout, service.check_alive):
                print(f"throughput: timed out after {args.timeout} s", flush=True)
            print(f"  throughput phase {cpu.report()}", flush=True)
            results.throughput_events = len(events)

            # 2. Latency at a fixed offered load.
            events = flow_events(f"{prefix}-lat", latency_connections, datetime.now(UTC))
            cpu.start()
            first = time.monotonic()
            latency_sent = publish_paced(publisher, events, args.rate, args.tick_ms / 1000)
            results.offered_rate = len(events) / (time.monotonic() - first)
            expected += len(events)
            if not reader.wait_for(expected, args.timeout, service.check_alive):
                print(f"latency: timed out after {args.timeout} s", flush=True)
            print(f"  latency phase {cpu.report()}", flush=True)
            results.latency_events = len(events)
        finally:
            publisher.close()
            code = service.stop() if service is not None else None
            try:
                arrivals, refused = reader.collect() if reader.process.is_alive() else ({}, [])
            finally:
                reader.close()

        tp_arrivals = [arrivals[i][0] for i in throughput_sent if i in arrivals]
        results.throughput_missing = len(throughput_sent) - len(tp_arrivals)
        if tp_arrivals:
            results.throughput_s = max(tp_arrivals) - min(throughput_sent.values())
        came_back = [(t, *arrivals[i]) for i, t in latency_sent.items() if i in arrivals]
        results.latencies_ms = sorted(1000 * (arrived - t) for t, arrived, _ in came_back)
        # recorded_at is the engine's clock at the start of the batch, in whole milliseconds.
        results.to_engine_ms = sorted(1000 * (decided - t) for t, _, decided in came_back)
        results.engine_to_topic_ms = sorted(
            1000 * (arrived - decided) for _, arrived, decided in came_back
        )
        start = min(latency_sent.values(), default=0.0)
        results.timeline = sorted((t - start, 1000 * (arrived - t)) for t, arrived, _ in came_back)
        results.latency_missing = len(latency_sent) - len(results.latencies_ms)
        figures = report(args, results, latency_connections)

        problems = _log_problems(log_file)
        print(
            f"service: exit code {code}; {len(problems)} warning/error lines in its log; "
            f"{len(refused)} dead letters"
        )
        for line in problems[:5]:
            print(f"  {line[:300]}")
        for headers in refused[:5]:
            print(f"  dead letter: {headers}")
        tansu_problems = _log_problems(work / "tansu.log")
        if tansu_problems:
            print(f"tansu: {len(tansu_problems)} warning/error lines: {tansu_problems[0][:200]}")
        if args.workdir is None and args.keep_log:
            shutil.copy(log_file, args.keep_log)
    print(f"left running: {', '.join(_still_running(children)) or 'nothing'}")
    return figures


def _still_running(children: dict[str, int]) -> list[str]:
    """The processes this run started that are still alive (a zombie about to be reaped is
    not alive)."""
    deadline = time.monotonic() + 5
    while True:
        alive = []
        for name, pid in children.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                if pid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{name} (pid {pid})")
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def report(args: argparse.Namespace, r: Results, latency_connections: int) -> Figures:
    """Print the figures, and whether both goals were met and every status change came back."""
    rate = r.throughput_events / r.throughput_s if r.throughput_s else 0.0
    print(
        f"throughput: {r.throughput_events:,} events ({args.connections:,} connections × "
        f"{len(FLOW)}) in {r.throughput_s:.2f} s = {rate:,.0f} events/s "
        f"(goal {THROUGHPUT_GOAL:,.0f}: {rate / THROUGHPUT_GOAL:.2f}x); published in "
        f"{r.publish_s:.2f} s ({r.throughput_events / max(r.publish_s, 1e-9):,.0f} events/s)"
        + (f"; {r.throughput_missing} MISSING" if r.throughput_missing else "")
    )
    lat = r.latencies_ms
    if lat:
        p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
        print(
            f"latency: {len(lat):,} events at {r.offered_rate:,.0f} events/s offered "
            f"({latency_connections:,} connections round-robin, "
            f"{latency_connections / args.rate:.2f} s between a connection's events): "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms "
            f"(goal p99 ≤ {P99_GOAL_MS:.0f} ms: {P99_GOAL_MS / p99:.2f}x)"
            + (f"; {r.latency_missing} MISSING" if r.latency_missing else "")
        )
        for name, values in (
            ("publish → engine decision (recorded_at)", r.to_engine_ms),
            ("engine decision → status topic", r.engine_to_topic_ms),
        ):
            print(
                f"  {name}: p50 {percentile(values, 50):.1f} ms, "
                f"p99 {percentile(values, 99):.1f} ms, max {values[-1]:.1f} ms"
            )
        if args.timeline:
            for second in range(math.ceil(r.timeline[-1][0])):
                window = sorted(ms for t, ms in r.timeline if second <= t < second + 1)
                if window:
                    print(
                        f"  t={second:>3} s: p50 {percentile(window, 50):6.1f} ms, "
                        f"p99 {percentile(window, 99):6.1f} ms, max {window[-1]:6.1f} ms"
                    )
    else:
        print(f"latency: no status change came back ({r.latency_missing} missing)")
        p99 = math.inf
    met = (
        rate >= THROUGHPUT_GOAL
        and p99 <= P99_GOAL_MS
        and not r.throughput_missing
        and not r.latency_missing
    )
    print(
        f"summary: {'PASS' if met else 'FAIL'}: throughput {rate:,.0f} events/s "
        f"(goal ≥ {THROUGHPUT_GOAL:,.0f}), "
        f"p99 {p99:.1f} ms at {args.rate:,.0f} events/s (goal ≤ {P99_GOAL_MS:.0f} ms)"
    )
    return Figures(rate, p99, met)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="throughput connections")
    parser.add_argument("--rate", type=float, default=1000, help="latency phase events/s")
    parser.add_argument("--duration", type=float, default=12, help="latency phase seconds")
    parser.add_argument(
        "--tick-ms", type=float, default=5, help="latency phase: publish what is due every tick"
    )
    parser.add_argument("--warmup", type=int, default=20, help="warm-up connections")
    parser.add_argument("--runs", type=int, default=1, help="consecutive runs, each reported")
    parser.add_argument("--service", choices=("process", "thread"), default="process")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting (as SYNCSTATUS_NAME), repeatable",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="latency percentiles per second of the run"
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait per phase")
    parser.add_argument("--profile", type=Path, help="thread mode: cProfile stats file")
    parser.add_argument("--workdir", help="keep data and logs here instead of a temp dir")
    parser.add_argument("--keep-log", type=Path, help="copy the service log here")
    args = parser.parse_args()
    if args.profile and args.service != "thread":
        parser.error("--profile needs --service thread")
    runs = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"-- run {number} of {args.runs}", flush=True)
        runs.append(run(args))
    if args.runs > 1:
        summarize(runs)
    sys.exit(0 if all(f.met for f in runs) else 1)


def summarize(runs: list[Figures]) -> None:
    """Every run's two figures side by side: the goals hold only if they hold in each."""
    for number, f in enumerate(runs, 1):
        print(
            f"run {number}: {f.rate:,.0f} events/s ({f.rate / THROUGHPUT_GOAL:.2f}x the goal), "
            f"p99 {f.p99:.1f} ms ({P99_GOAL_MS / f.p99:.2f}x): {'PASS' if f.met else 'FAIL'}"
        )
    rates, p99s = sorted(f.rate for f in runs), sorted(f.p99 for f in runs)
    print(
        f"runs: {sum(f.met for f in runs)} of {len(runs)} met both goals; throughput "
        f"{rates[0]:,.0f}–{rates[-1]:,.0f} events/s, p99 {p99s[0]:.1f}–{p99s[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
