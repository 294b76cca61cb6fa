"""Fault campaign: the real service under crashes and outages while a messy stream flows.

    python -m bench.faults [--quick] [--seed N] [--connections N] [--keep]

Starts its own EmbeddedPostgres (in a temp dir) and EmbeddedKafka (Tansu), then `syncstatus
run` as a subprocess configured with SYNCSTATUS_* variables (Tansu-friendly consumer
settings: session timeout 2000 ms, heartbeat 500 ms), and publishes a stream from a producer
thread:

- every connection goes Authorization -> Synced (14 events); about a tenth of them have their
  pipeline events published before their authorization events (out-of-order across topics);
- exact duplicates: some events are published a second time a little later (same event id);
- invalid messages of known kinds, written with a raw KafkaProducer: garbage bytes
  (`undecodable`), an unknown writer-schema fingerprint (`unknown_schema`), an UNKNOWN event
  type (`invalid_event`) and an authorization event on the pipeline topic (`wrong_topic`).

A ledger keeps every message sent (valid with its event id, duplicate, or invalid with its
exact bytes and the dead-letter reason it must get).

While the stream flows, faults are injected one after another at random (seeded) moments:
SIGKILL of the service and restart, the database stopped and restarted, the broker frozen
with SIGSTOP/SIGCONT, a second instance joining the group and later leaving with SIGTERM.
The producer paces itself so that it is still publishing when the last fault ends. The
recovery time of a fault is the time from its end until a reader of the status topic
receives a status change the service recorded (`recorded_at`) after that end.

Afterwards (once every connection reached Synced on the status topic, or a timeout) it
checks: every valid event applied exactly once (`status_history` and `processed_events`
against the ledger); each connection's final status against a replay of its events through
the domain (`Connection.accept`); gap-free status-topic sequences per connection; every
invalid message on the dead-letter topic with the right `reason`. The last line is

    faults: N injected; lost L; applied twice D; sequence gaps G; dead-lettered K/M;
    worst recovery R s

(one line) and the exit code is 0 only if nothing was lost, applied twice or skipped, every invalid
message was dead-lettered with its reason, every fault was recovered from, every final
status matches the replay and no service process exited on its own or uncleanly.

`--quick` is the small version CI runs (one fault of each kind, 400 connections, about 40 s
on two cores); the default is the full campaign (three of each, 3,000 connections, about
three minutes). `--keep` keeps the work dir (service logs, `ledger.jsonl`); it is also kept
when the campaign fails. The same `--seed` gives the same stream (event ids,
order, duplicates, invalid bytes) and the same fault plan (order, gaps, durations).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaProducer

from bench.engine import FLOW, SUBSTAGES
from syncstatus.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from syncstatus.kafka import client_config, ensure_topics, family_topics
from syncstatus.logs import configure_logging
from syncstatus.messages import EventMessages, StatusChangeMessages
from syncstatus.producers.publisher import EventPublisher
from syncstatus.reader import TopicReader
from syncstatus.schemas import HEADER_SIZE, MAGIC
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Connection, Policy
from syncstatus.statemachine.events import EventFamily, EventType, SessionEvent
from syncstatus.statemachine.statuses import Status

E = EventType
DEFAULT_SEED = 20260101
SERVICE_COMMAND = [sys.executable, "-m", "syncstatus.cli", "run"]
TANSU_CONSUMER = {
    "SYNCSTATUS_KAFKA_SESSION_TIMEOUT_MS": "2000",
    "SYNCSTATUS_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}
SIGKILL, DATABASE, BROKER_PAUSE, SECOND_INSTANCE = (
    "sigkill",
    "database-restart",
    "broker-pause",
    "second-instance",
)
FAULT_KINDS = (SIGKILL, DATABASE, BROKER_PAUSE, SECOND_INSTANCE)
INVALID_REASONS = ("undecodable", "unknown_schema", "invalid_event", "wrong_topic")
LAST_LINE = (
    "faults: {n} injected; lost {lost}; applied twice {twice}; sequence gaps {gaps}; "
    "dead-lettered {k}/{m}; worst recovery {worst:.1f} s"
)


@dataclass(frozen=True)
class Profile:
    connections: int
    faults_per_kind: int
    invalid_per_kind: int
    duplicate_fraction: float = 0.05
    out_of_order_fraction: float = 0.1
    #: fraction of the stream over which one connection's 14 events are spread
    window: float = 0.08
    #: how much later (fraction of the stream) a duplicate follows its original, at most
    duplicate_delay: float = 0.03
    gap_s: tuple[float, float] = (2.0, 5.0)  # stream time before each fault
    database_down_s: tuple[float, float] = (2.0, 4.0)
    broker_paused_s: tuple[float, float] = (3.0, 6.0)
    second_instance_s: tuple[float, float] = (3.0, 6.0)  # after it got partitions
    restart_delay_s: tuple[float, float] = (0.0, 1.0)  # after a SIGKILL
    tail_s: float = 4.0  # the stream goes on this long after the last fault
    recovery_timeout_s: float = 45.0
    settle_timeout_s: float = 90.0


QUICK = Profile(connections=400, faults_per_kind=1, invalid_per_kind=10)
FULL = Profile(
    connections=3000,
    faults_per_kind=3,
    invalid_per_kind=40,
    window=0.03,
    duplicate_delay=0.015,
    gap_s=(3.0, 8.0),
    database_down_s=(2.0, 6.0),
    broker_paused_s=(3.0, 8.0),
    second_instance_s=(4.0, 10.0),
    settle_timeout_s=180.0,
)

#: what a fault is expected to cost on top of its gap and hold, to plan the stream's length
RECOVERY_ALLOWANCE_S = {SIGKILL: 6.0, DATABASE: 5.0, BROKER_PAUSE: 5.0, SECOND_INSTANCE: 8.0}


def log(message: str) -> None:
    print(message, flush=True)


def log_some(lines: list[str], limit: int = 20) -> None:
    for line in lines[:limit]:
        log(f"    {line}")
    if len(lines) > limit:
        log(f"    ... and {len(lines) - limit} more")


# --- the stream and its ledger ---------------------------------------------------------------


@dataclass(eq=False)
class Sent:
    """One message of the stream, as the ledger keeps it."""

    kind: str  # "valid", "duplicate" or "invalid"
    topic: str
    key: bytes | None
    event: SessionEvent | None = None  # valid and duplicate
    value: bytes | None = None  # invalid: the exact bytes
    reason: str | None = None  # invalid: the dead-letter reason it must get
    sends: int = 0
    acked: bool = False
    sent_at: float = math.nan

    def ledger_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"kind": self.kind, "topic": self.topic}
        row["key"] = None if self.key is None else self.key.decode(errors="replace")
        if self.event is not None:
            row |= {
                "event_id": str(self.event.event_id),
                "type": self.event.type.value,
                "connection_id": self.event.connection_id,
                "occurred_at": self.event.occurred_at.isoformat(),
            }
        if self.value is not None:
            row |= {"reason": self.reason, "value": self.value.hex()}
        return row | {"sends": self.sends, "acked": self.acked}


@dataclass
class Stream:
    messages: list[Sent]
    events: dict[str, list[SessionEvent]]  # per connection, in flow order
    out_of_order: set[str]

    @property
    def valid(self) -> list[Sent]:
        return [m for m in self.messages if m.kind == "valid"]

    @property
    def duplicates(self) -> list[Sent]:
        return [m for m in self.messages if m.kind == "duplicate"]

    @property
    def invalid(self) -> list[Sent]:
        return [m for m in self.messages if m.kind == "invalid"]


def build_stream(profile: Profile, seed: int, settings: Settings) -> Stream:
    """The whole stream, in publishing order, from the seed alone."""
    rng = random.Random(seed)
    topics = family_topics(settings)
    inputs = [settings.topic_auth, settings.topic_webhooks, settings.topic_pipeline]
    # In the past: the service refuses events stamped too far in the future.
    start = datetime(2020, 1, 1, tzinfo=UTC)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    keyed: list[tuple[float, Sent]] = []
    events: dict[str, list[SessionEvent]] = {}
    out_of_order: set[str] = set()
    for c in range(profile.connections):
        cid = f"conn-{c:05d}"
        flow = [
            SessionEvent(
                event_id=new_id(),
                type=kind,
                connection_id=cid,
                session_id=f"{cid}-session",
                app="facebook_ads",
                occurred_at=start + timedelta(seconds=step),
                producer="bench.faults",
                substage=SUBSTAGES[step - 7] if kind is E.PROCESSING_SUBSTAGE_COMPLETED else None,
            )
            for step, kind in enumerate(FLOW)
        ]
        events[cid] = flow
        order = flow
        if rng.random() < profile.out_of_order_fraction:
            auth = [e for e in flow if e.type.family is EventFamily.AUTHORIZATION]
            order = [e for e in flow if e.type.family is not EventFamily.AUTHORIZATION] + auth
            out_of_order.add(cid)
        begin = rng.random() * (1 - profile.window)
        step = profile.window / len(order)
        for k, event in enumerate(order):
            position = begin + step * (k + 0.9 * rng.random())  # increasing per connection
            topic = topics[event.type.family]
            keyed.append((position, Sent("valid", topic, cid.encode(), event=event)))
            if rng.random() < profile.duplicate_fraction:
                later = position + rng.uniform(0, profile.duplicate_delay)
                keyed.append((later, Sent("duplicate", topic, cid.encode(), event=event)))

    codec = EventMessages().codec
    known = codec.known_fingerprints
    values: set[bytes] = set()
    for i in range(profile.invalid_per_kind * len(INVALID_REASONS)):
        reason = INVALID_REASONS[i % len(INVALID_REASONS)]
        key = f"invalid-{i:04d}".encode()
        topic = rng.choice(inputs)
        record = {
            "event_id": new_id(),
            "type": E.AUTHORIZATION_STARTED.value,
            "connection_id": f"invalid-{i:04d}",
            "session_id": f"invalid-{i:04d}-session",
            "app": "facebook_ads",
            "occurred_at": start,
            "producer": "bench.faults",
            "error": None,
            "substage": None,
            "attributes": {},
            "accounts": None,
        }
        while True:
            if reason == "undecodable":
                value = rng.randbytes(rng.randint(1, 64))
                if value.startswith(MAGIC):
                    value = b"\x00" + value
            elif reason == "unknown_schema":
                fingerprint = rng.randbytes(8)
                if fingerprint in known:
                    continue
                value = MAGIC + fingerprint + codec.encode(record)[HEADER_SIZE:]
            elif reason == "invalid_event":
                value = codec.encode(record | {"type": "UNKNOWN"})
            else:  # wrong_topic: an authorization event on the pipeline topic
                topic = settings.topic_pipeline
                value = codec.encode(record)
            if value not in values:
                break
            record["event_id"] = new_id()
        values.add(value)
        keyed.append((rng.random(), Sent("invalid", topic, key, value=value, reason=reason)))

    keyed.sort(key=lambda pair: pair[0])  # stable: ties keep their insertion order
    return Stream([sent for _, sent in keyed], events, out_of_order)


def replay(events: list[SessionEvent]) -> Connection:
    """The reference: the connection's events through the domain, in occurred_at order."""
    connection = Connection(connection_id=events[0].connection_id)
    now = datetime(2020, 1, 2, tzinfo=UTC)
    for event in sorted(events, key=lambda e: e.occurred_at):
        connection.accept(event, now, Policy())
    return connection


class Producer(threading.Thread):
    """Publishes the stream in order, paced to finish at `deadline`, which the fault runner
    moves so that the stream still flows when the last fault ends.

    Valid events and duplicates go through `EventPublisher`, invalid messages through a raw
    KafkaProducer. A send the broker did not acknowledge is sent again (same bytes, same event
    id), so the ledger's messages all reach the broker.
    """

    TICK_S = 0.05
    MAX_PER_TICK = 500

    def __init__(self, settings: Settings, messages: list[Sent], deadline: float) -> None:
        super().__init__(name="producer", daemon=True)
        self.settings = settings
        self.messages = messages
        self.deadline = deadline  # monotonic; moved by the fault runner
        self.published = 0
        self.resent = 0
        self.finished_at = math.nan
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the runner
            self.error = error
        finally:
            self.done.set()

    def _run(self) -> None:
        publisher = EventPublisher(client_config(self.settings), family_topics(self.settings))
        raw = KafkaProducer(
            **client_config(self.settings), acks="all", enable_idempotence=True, linger_ms=5
        )
        pending: list[tuple[Sent, Any]] = []

        def send(message: Sent) -> None:
            message.sends += 1
            message.sent_at = time.monotonic()
            if message.event is not None:
                future = publisher.publish(message.event)
            else:
                future = raw.send(message.topic, key=message.key, value=message.value)
            pending.append((message, future))

        try:
            total = len(self.messages)
            i = 0
            while i < total:
                now = time.monotonic()
                left = max(self.deadline - now, self.TICK_S)
                count = min(self.MAX_PER_TICK, max(1, math.ceil((total - i) * self.TICK_S / left)))
                for message in self.messages[i : i + count]:
                    send(message)
                i += count
                self.published = i
                self._settle(pending, send)
                time.sleep(max(0.0, now + self.TICK_S - time.monotonic()))
            for _ in range(10):
                publisher.flush()
                raw.flush()
                self._settle(pending, send)
                if not pending:
                    break
            unsent = [m for m in self.messages if not m.acked]
            if unsent:
                raise RuntimeError(f"{len(unsent)} messages never acknowledged by the broker")
            self.finished_at = time.monotonic()
        finally:
            publisher.close()
            raw.close()

    def _settle(self, pending: list[tuple[Sent, Any]], send: Any) -> None:
        """Drop acknowledged sends from `pending`; send failed ones again."""
        failed = []
        still = []
        for message, future in pending:
            if not future.is_done:
                still.append((message, future))
            elif future.succeeded():
                message.acked = True
            else:
                failed.append(message)
        pending[:] = still
        for message in failed:
            self.resent += 1
            send(message)


# --- reading the outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRecord:
    arrived: float  # monotonic, at the reader
    connection_id: str
    sequence: int
    to_code: int
    recorded_at: float  # epoch seconds, the service's clock when it applied the change
    cause_event_id: uuid.UUID


class OutputReader(threading.Thread):
    """Reads the status and dead-letter topics from the beginning, without a consumer group."""

    def __init__(self, settings: Settings, expected: dict[str, int], invalid: set[bytes]) -> None:
        super().__init__(name="reader", daemon=True)
        self.settings = settings
        self.expected = expected  # sequences per connection at the end
        self.invalid = invalid
        self.lock = threading.Lock()
        self.statuses: list[StatusRecord] = []
        self.dead_letters: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        self.sequences: dict[str, set[int]] = defaultdict(set)
        self.complete: set[str] = set()
        self.invalid_seen: set[bytes] = set()
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._reader = TopicReader(
            client_config(settings),
            [settings.topic_status, settings.topic_dead_letter],
            from_beginning=True,
        )
        self._messages = StatusChangeMessages()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._take(self._reader.poll(100))
        except BaseException as error:
            self.error = error
        finally:
            self._reader.close()

    def _take(self, records: list[Any]) -> None:
        now = time.monotonic()
        with self.lock:
            for record in records:
                if record.topic == self.settings.topic_status:
                    change = self._messages.decode(record.value)
                    cid = change["connection_id"]
                    self.statuses.append(
                        StatusRecord(
                            now,
                            cid,
                            change["sequence"],
                            change["to_code"],
                            change["recorded_at"].timestamp(),
                            change["cause_event_id"],
                        )
                    )
                    self.sequences[cid].add(change["sequence"])
                    if len(self.sequences[cid]) == self.expected.get(cid, -1):
                        self.complete.add(cid)
                else:
                    headers = {k: v for k, v in record.headers or []}
                    self.dead_letters.append((record.key, record.value, headers))
                    if record.value in self.invalid:
                        self.invalid_seen.add(record.value)

    def count(self) -> int:
        with self.lock:
            return len(self.statuses)

    def first_recorded_after(self, wall: float, from_index: int = 0) -> StatusRecord | None:
        """The first status change to arrive that the service recorded at or after `wall`."""
        with self.lock:
            for record in self.statuses[from_index:]:
                if record.recorded_at >= wall:
                    return record
        return None


# --- the service processes -------------------------------------------------------------------


class ServiceProcess:
    """One `syncstatus run`, its log in a file of its own, its own metrics port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_file = log_dir / f"{name}.log"
        self.expected_exit = False
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                SERVICE_COMMAND,
                env={**env, "SYNCSTATUS_METRICS_PORT": str(self.port)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def assigned_partitions(self) -> float:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics/"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0
        match = re.search(r"^syncstatus_consumer_assigned_partitions (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0

    def kill(self) -> int:
        self.expected_exit = True
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(30)

    def terminate(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait; None if it had to be killed."""
        self.expected_exit = True
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "    (no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line[:400]}" for line in text) or "    (empty)"


# --- the faults ------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    gap_s: float
    hold_s: float
    injected: float = math.nan  # monotonic
    ended: float = math.nan
    ended_wall: float = math.nan
    reader_index: int = 0  # status records received before it ended
    recovered: float | None = None  # monotonic arrival of the first progress after it
    notes: list[str] = field(default_factory=list)

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.ended


def plan_faults(profile: Profile, seed: int) -> list[Fault]:
    rng = random.Random(seed * 7919 + 1)
    kinds = [kind for kind in FAULT_KINDS for _ in range(profile.faults_per_kind)]
    rng.shuffle(kinds)
    holds = {
        SIGKILL: profile.restart_delay_s,
        DATABASE: profile.database_down_s,
        BROKER_PAUSE: profile.broker_paused_s,
        SECOND_INSTANCE: profile.second_instance_s,
    }
    return [Fault(kind, rng.uniform(*profile.gap_s), rng.uniform(*holds[kind])) for kind in kinds]


def estimate_s(faults: list[Fault]) -> float:
    return sum(f.gap_s + f.hold_s + RECOVERY_ALLOWANCE_S[f.kind] for f in faults)


class Campaign:
    def __init__(self, args: argparse.Namespace, profile: Profile, work: Path) -> None:
        self.args = args
        self.profile = profile
        self.work = work
        self.postgres: EmbeddedPostgres | None = None
        self.kafka: EmbeddedKafka | None = None
        self.env: dict[str, str] = {}
        self.services: list[ServiceProcess] = []  # every process started, in order
        self.primary: ServiceProcess | None = None
        self.unexpected_exits: list[str] = []
        self.unclean_stops: list[str] = []
        self.t0 = time.monotonic()
        self.producer: Producer | None = None
        self.reader: OutputReader | None = None
        self.last_line = ""

    def at(self, moment: float) -> str:
        return f"t+{moment - self.t0:6.1f}s"

    # -- processes --

    def start_service(self, role: str) -> ServiceProcess:
        index = sum(1 for s in self.services if s.name.startswith(role)) + 1
        service = ServiceProcess(f"{role}{index}", self.env, self.work)
        self.services.append(service)
        return service

    def supervise(self) -> None:
        """Restart the primary if it died on its own, as a supervisor would, and note it."""
        for service in self.services:
            if not service.expected_exit and not service.alive():
                service.expected_exit = True
                code = service.process.returncode
                self.unexpected_exits.append(f"{service.name} exited with {code}")
                log(
                    f"{self.at(time.monotonic())} !! {service.name} exited on its own with "
                    f"{code}; its log:\n{tail(service.log_file)}"
                )
                if service is self.primary:
                    self.primary = self.start_service("service-a")
                    log(f"{self.at(time.monotonic())}    restarted as {self.primary.name}")
        for thread in (self.producer, self.reader):
            if thread is not None and thread.error is not None:
                raise RuntimeError(f"the {thread.name} thread failed") from thread.error

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.supervise()
            time.sleep(min(0.1, left))

    def wait_until(self, condition: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervise()
            if condition():
                return True
            time.sleep(0.1)
        return condition()

    # -- the faults --

    def inject(self, fault: Fault) -> None:
        assert self.postgres is not None and self.kafka is not None and self.primary is not None
        fault.injected = time.monotonic()
        if fault.kind == SIGKILL:
            victim = self.primary
            victim.kill()
            fault.notes.append(f"killed {victim.name}")
            time.sleep(fault.hold_s)
            self.primary = self.start_service("service-a")
            fault.notes.append(f"restarted as {self.primary.name} after {fault.hold_s:.1f} s")
        elif fault.kind == DATABASE:
            self.postgres.stop()
            stopped = time.monotonic()
            time.sleep(max(0.0, fault.hold_s - (stopped - fault.injected)))
            self.postgres.start()
            fault.notes.append(f"down {time.monotonic() - fault.injected:.1f} s")
        elif fault.kind == BROKER_PAUSE:
            self.kafka.pause()
            try:
                time.sleep(fault.hold_s)
            finally:
                self.kafka.resume()
            fault.notes.append(f"paused {fault.hold_s:.1f} s")
        else:
            second = self.start_service("service-b")
            joined = self.wait_until(lambda: second.assigned_partitions() > 0, 60)
            shares = (second.assigned_partitions(), self.primary.assigned_partitions())
            fault.notes.append(
                f"{second.name} got partitions after {time.monotonic() - fault.injected:.1f} s "
                f"(shares {shares[1]:g}/{shares[0]:g})"
                if joined
                else f"{second.name} never got partitions within 60 s"
            )
            self.sleep(fault.hold_s)
            code = second.terminate()
            fault.notes.append(f"left with SIGTERM after {fault.hold_s:.1f} s, exit code {code}")
            if code != 0:
                self.unclean_stops.append(f"{second.name} exit code {code} on SIGTERM")
        fault.ended = time.monotonic()
        fault.ended_wall = time.time()

    def run_faults(self, faults: list[Fault]) -> None:
        assert self.producer is not None and self.reader is not None
        for number, fault in enumerate(faults, 1):
            self.sleep(fault.gap_s)
            if self.producer.done.is_set():
                log(f"{self.at(time.monotonic())} !! the stream ended before fault {number}")
            fault.reader_index = self.reader.count()
            self.inject(fault)
            log(
                f"{self.at(fault.injected)} fault {number}/{len(faults)} {fault.kind}: "
                f"{'; '.join(fault.notes)}; ended {self.at(fault.ended)}"
            )
            found = self.wait_until(
                lambda f=fault, reader=self.reader: (
                    reader.first_recorded_after(f.ended_wall, f.reader_index) is not None
                ),
                self.profile.recovery_timeout_s,
            )
            if found:
                record = self.reader.first_recorded_after(fault.ended_wall, fault.reader_index)
                assert record is not None
                fault.recovered = record.arrived
                log(f"{self.at(record.arrived)}    progress again after {fault.recovery_s:.1f} s")
            else:
                log(
                    f"{self.at(time.monotonic())}    no progress within "
                    f"{self.profile.recovery_timeout_s:.0f} s; going on"
                )
            rest = faults[number:]
            self.producer.deadline = time.monotonic() + estimate_s(rest) + self.profile.tail_s

    # -- the whole run --

    def run(self) -> int:
        args, profile = self.args, self.profile
        dropped = [k for k in os.environ if k.startswith("SYNCSTATUS_")]
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCSTATUS_")}
        if dropped:
            log(f"ignoring {', '.join(sorted(dropped))} from the environment")
        self.postgres = EmbeddedPostgres(self.work / "pg")
        self.postgres.start()
        self.kafka = EmbeddedKafka(log_file=self.work / "tansu.log")
        self.kafka.start()
        settings = Settings(
            database_url=self.postgres.url,
            bootstrap_servers=self.kafka.bootstrap_servers,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=500,
        )
        self.env = {
            **base_env,
            "SYNCSTATUS_DATABASE_URL": settings.database_url,
            "SYNCSTATUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SYNCSTATUS_LOG_LEVEL": args.log_level,
            **TANSU_CONSUMER,
        }
        ensure_topics(settings)

        stream = build_stream(profile, args.seed, settings)
        references = {cid: replay(events) for cid, events in stream.events.items()}
        expected = {cid: c.version for cid, c in references.items()}
        faults = plan_faults(profile, args.seed)
        invalid_values = {m.value for m in stream.invalid if m.value is not None}
        log(
            f"stream (seed {args.seed}): {len(stream.events)} connections "
            f"({len(stream.out_of_order)} with pipeline events before authorization), "
            f"{len(stream.valid)} valid events, {len(stream.duplicates)} duplicates, "
            f"{len(stream.invalid)} invalid messages; faults planned: "
            + ", ".join(f.kind for f in faults)
        )

        self.primary = self.start_service("service-a")
        if not self.wait_until(lambda: self.primary.assigned_partitions() > 0, 60):
            raise RuntimeError(f"the service got no partitions:\n{tail(self.primary.log_file)}")
        self.reader = OutputReader(settings, expected, invalid_values)
        self.reader.start()
        self.t0 = time.monotonic()
        log(f"{self.at(self.t0)} service up ({self.primary.name}); publishing")
        self.producer = Producer(
            settings, stream.messages, self.t0 + 2.0 + estimate_s(faults) + profile.tail_s
        )
        self.producer.start()
        reader = self.reader
        if not self.wait_until(lambda: reader.count() > 0, 60):
            raise RuntimeError(f"no status change within 60 s:\n{tail(self.primary.log_file)}")
        self.run_faults(faults)
        self.producer.deadline = time.monotonic() + profile.tail_s
        producer = self.producer
        self.wait_until(producer.done.is_set, 120 + profile.tail_s)
        self.supervise()
        if not producer.done.is_set():
            raise RuntimeError(f"the producer did not finish ({producer.published} published)")
        log(
            f"{self.at(producer.finished_at)} stream published "
            f"({len(stream.messages)} messages, {producer.resent} sent again)"
        )
        settled = self.wait_until(
            lambda: (
                len(reader.complete) == len(expected)
                and len(reader.invalid_seen) == len(invalid_values)
            ),
            profile.settle_timeout_s,
        )
        log(
            f"{self.at(time.monotonic())} "
            + (
                "every connection Synced on the status topic, every invalid message dead-lettered"
                if settled
                else f"not settled within {profile.settle_timeout_s:.0f} s: "
                f"{len(reader.complete)}/{len(expected)} connections complete, "
                f"{len(reader.invalid_seen)}/{len(invalid_values)} invalid messages dead-lettered"
            )
        )
        for service in self.services:
            if service.alive():
                code = service.terminate()
                if code != 0:
                    self.unclean_stops.append(f"{service.name} exit code {code} on SIGTERM")
        time.sleep(1.0)  # anything still in flight to the reader
        reader.stop.set()
        reader.join(10)
        (self.work / "ledger.jsonl").write_text(
            "".join(json.dumps(m.ledger_row()) + "\n" for m in stream.messages)
        )
        ok, self.last_line = self.check(stream, references, faults, settled)
        return 0 if ok else 1

    # -- the checks --

    def check(
        self,
        stream: Stream,
        references: dict[str, Connection],
        faults: list[Fault],
        settled: bool,
    ) -> tuple[bool, str]:
        assert self.postgres is not None and self.reader is not None
        database = sa.create_engine(self.postgres.url)
        try:
            with database.connect() as db:
                history = dict(
                    db.execute(
                        sa.text("SELECT event_id, count(*) FROM status_history GROUP BY event_id")
                    ).all()
                )
                processed = {
                    row[0] for row in db.execute(sa.text("SELECT event_id FROM processed_events"))
                }
                stored = {
                    row[0]: (row[1], row[2])
                    for row in db.execute(
                        sa.text("SELECT connection_id, status, version FROM connections")
                    )
                }
                refused = dict(
                    db.execute(
                        sa.text("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
                    ).all()
                )
                leftovers = db.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM parked_events), "
                        "(SELECT count(*) FROM outbox WHERE published_at IS NULL), "
                        "(SELECT count(*) FROM dead_letters WHERE published_at IS NULL)"
                    )
                ).one()
        finally:
            database.dispose()

        log("")
        log("== recovery ==")
        for number, f in enumerate(faults, 1):
            if f.recovered is None:  # look again: progress may have come after the wait
                record = self.reader.first_recorded_after(f.ended_wall, f.reader_index)
                f.recovered = None if record is None else record.arrived
            recovery = "never" if f.recovery_s is None else f"{f.recovery_s:.1f} s"
            log(
                f"  {number:2d}. {f.kind:16s} injected {self.at(f.injected)}  ended "
                f"{self.at(f.ended)}  recovered "
                f"{'-' if f.recovered is None else self.at(f.recovered)}  recovery {recovery}"
                f"  ({'; '.join(f.notes)})"
            )
        unrecovered = [f for f in faults if f.recovered is None]
        recoveries = [f.recovery_s for f in faults if f.recovery_s is not None]

        log("== applied exactly once ==")
        valid_ids = {m.event.event_id for m in stream.valid if m.event is not None}
        lost = sorted(valid_ids - history.keys())
        twice = sorted(event_id for event_id, count in history.items() if count > 1)
        foreign = sorted(history.keys() - valid_ids)
        missing_processed = sorted(valid_ids - processed)
        extra_processed = sorted(processed - valid_ids)
        log(
            f"  valid events {len(valid_ids)}; status_history rows {sum(history.values())} "
            f"({len(history)} event ids); processed_events {len(processed)}"
        )
        log(
            f"  lost {len(lost)}; applied twice {len(twice)}; history rows of no valid event "
            f"{len(foreign)}; valid ids missing from processed_events {len(missing_processed)}; "
            f"processed_events ids of no valid event {len(extra_processed)}"
        )
        by_id = {m.event.event_id: m.event for m in stream.valid if m.event is not None}
        for label, ids in (("lost", lost), ("applied twice", twice)):
            log_some(
                [
                    f"{label}: {i} {by_id[i].connection_id} {by_id[i].type.value}"
                    + (f" ({history[i]} history rows)" if label == "applied twice" else "")
                    for i in ids
                ]
            )
        for label, ids in (
            ("in history, not in the ledger", foreign),
            ("missing from processed_events", missing_processed),
            ("in processed_events, not in the ledger", extra_processed),
        ):
            log_some([f"{label}: {event_id}" for event_id in ids], 10)

        log("== final statuses against the replay ==")
        last_on_topic: dict[str, StatusRecord] = {}
        by_connection: dict[str, list[StatusRecord]] = defaultdict(list)
        for record in self.reader.statuses:
            by_connection[record.connection_id].append(record)
            kept = last_on_topic.get(record.connection_id)
            if kept is None or record.sequence > kept.sequence:
                last_on_topic[record.connection_id] = record
        mismatches = []
        for cid, reference in references.items():
            want = (int(reference.status) if reference.status else None, reference.version)
            in_db = stored.get(cid)
            top = last_on_topic.get(cid)
            on_topic = None if top is None else (top.to_code, top.sequence)
            if in_db != want or on_topic != want:
                mismatches.append(
                    f"{cid}: replay {want}, database {in_db}, status topic {on_topic}"
                )
        finals = Counter(
            (int(r.status) if r.status else None, r.version) for r in references.values()
        )
        log(
            "  replay: "
            + ", ".join(
                f"{n} at {Status(s).label if s else '-'} ({s}) after {v} transitions"
                for (s, v), n in finals.items()
            )
        )
        log(
            f"  {len(references) - len(mismatches)}/{len(references)} connections match the "
            f"replay (status, sequence) in the database and on the status topic"
        )
        log_some(mismatches)

        log("== status topic sequences ==")
        gaps = 0
        duplicates = 0
        conflicts = []
        gap_lines = []
        for cid, reference in references.items():
            last = 0
            causes: dict[int, uuid.UUID] = {}
            for record in by_connection.get(cid, []):
                cause = causes.setdefault(record.sequence, record.cause_event_id)
                if cause != record.cause_event_id:
                    conflicts.append(
                        f"{cid} #{record.sequence}: {cause} and {record.cause_event_id}"
                    )
                if record.sequence <= last:
                    duplicates += 1
                    continue
                if record.sequence > last + 1:
                    gaps += 1
                    gap_lines.append(f"{cid}: #{record.sequence} after #{last}")
                last = record.sequence
            if last < reference.version:
                gaps += 1
                gap_lines.append(f"{cid}: ends at #{last} of {reference.version}")
        log(
            f"  {len(self.reader.statuses)} records for {len(by_connection)} connections; "
            f"gaps {gaps}; duplicates {duplicates} (redelivered, allowed); "
            f"conflicting duplicates {len(conflicts)}"
        )
        log_some(gap_lines + conflicts)

        log("== dead letters ==")
        reasons_by_value: dict[bytes | None, list[str]] = defaultdict(list)
        for _, value, headers in self.reader.dead_letters:
            reasons_by_value[value].append(headers.get("reason", b"").decode(errors="replace"))
        matched: Counter[str] = Counter()
        wanted: Counter[str] = Counter()
        wrong = []
        for m in stream.invalid:
            assert m.reason is not None
            wanted[m.reason] += 1
            got = reasons_by_value.get(m.value, [])
            if m.reason in got:
                matched[m.reason] += 1
            else:
                key = m.key.decode() if m.key else None
                wrong.append(f"{key} on {m.topic}: want {m.reason}, got {got or 'nothing'}")
        invalid_values = {m.value for m in stream.invalid}
        others: Counter[str] = Counter()
        for value, reasons in reasons_by_value.items():
            if value not in invalid_values:
                others.update(set(reasons))
        k, total = sum(matched.values()), len(stream.invalid)
        log(
            f"  {k}/{total} invalid messages dead-lettered with the right reason ("
            + ", ".join(f"{r} {matched[r]}/{wanted[r]}" for r in INVALID_REASONS)
            + f"); {len(self.reader.dead_letters)} dead-letter records in all"
        )
        log(
            f"  other dead letters (valid events refused): {dict(others) or 'none'}; "
            f"dead_letters table by reason: {refused}"
        )
        log_some(wrong)
        parked, unpublished, unpublished_dead = leftovers
        log(
            f"  left over: parked events {parked}, unpublished status changes {unpublished}, "
            f"unpublished dead letters {unpublished_dead}"
        )

        problems = []
        if not settled:
            problems.append("the outputs did not settle")
        if unrecovered:
            problems.append(f"{len(unrecovered)} faults never followed by progress")
        if mismatches:
            problems.append(f"{len(mismatches)} final statuses differ from the replay")
        if conflicts:
            problems.append(f"{len(conflicts)} conflicting status records")
        if others:
            problems.append("valid events were dead-lettered")
        if missing_processed or foreign:
            problems.append("status_history or processed_events disagree with the ledger")
        problems += [f"unexpected exit: {e}" for e in self.unexpected_exits]
        problems += [f"unclean stop: {e}" for e in self.unclean_stops]
        if problems:
            log("== problems ==")
            for problem in problems:
                log(f"  {problem}")
        ok = not (lost or twice or gaps or k != total or problems)
        if not ok:
            self.print_logs()
        worst = max(recoveries) if recoveries else math.nan
        if unrecovered:
            worst = math.inf
        last_line = LAST_LINE.format(
            n=len(faults), lost=len(lost), twice=len(twice), gaps=gaps, k=k, m=total, worst=worst
        )
        return ok, last_line

    def print_logs(self) -> None:
        log("== log tails ==")
        for service in self.services:
            log(f"--- {service.log_file}")
            log(tail(service.log_file))
        log(f"--- {self.work / 'tansu.log'}")
        log(tail(self.work / "tansu.log"))
        log(f"--- {self.work / 'pg' / 'postgres.log'}")
        log(tail(self.work / "pg" / "postgres.log"))

    def cleanup(self) -> None:
        for service in self.services:
            if service.alive():
                service.terminate(10)
        if self.producer is not None:
            self.producer.deadline = 0  # publish the rest at once, so the thread ends
        if self.reader is not None:
            self.reader.stop.set()
        if self.kafka is not None:
            with contextlib.suppress(Exception):
                self.kafka.resume()
            self.kafka.stop()
        if self.postgres is not None:
            self.postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small campaign CI runs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--connections", type=int, help="override the profile's connections")
    parser.add_argument("--log-level", default="WARNING", help="SYNCSTATUS_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, ledger)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", json=False)  # this process's own (embedded servers') logs
    profile = QUICK if args.quick else FULL
    if args.connections:
        profile = dataclasses.replace(profile, connections=args.connections)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    campaign = Campaign(args, profile, work)
    code = 1
    try:
        code = campaign.run()
    except Exception as error:
        log(f"campaign failed: {error!r}")
        campaign.print_logs()
        raise
    finally:
        campaign.cleanup()
        if args.keep or code != 0:
            with contextlib.suppress(OSError):
                shutil.copy(work / "pg" / "postgres.log", work / "postgres.log")
            shutil.rmtree(work / "pg", ignore_errors=True)
            log(f"logs and ledger kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{'quick' if args.quick else 'full'} campaign: {time.monotonic() - started:.0f} s")
    log(campaign.last_line)
    return code


if __name__ == "__main__":
    sys.exit(main())
