"""The moving parts of a campaign: service processes, the producer and the outside reader."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from bench.faults.stories import Invalid, Planned
from syncstatus.consumers.reader import TopicReader
from syncstatus.devtools.embedded import free_port
from syncstatus.kafka import client_config, family_topics
from syncstatus.schemas.messages import EventMessages, StatusChangeMessages
from syncstatus.settings import Settings

SERVICE_COMMAND = [sys.executable, "-m", "bench.faults.crashpoints"]


def log(message: str) -> None:
    print(message, flush=True)


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "    (no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line[:400]}" for line in text) or "    (empty)"


class ServiceProcess:
    """One `syncstatus run` (through the crash points), its own log and metrics port."""

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

    def metric(self, name: str) -> float:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics/"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0

    def assigned_partitions(self) -> float:
        return self.metric("syncstatus_consumer_assigned_partitions")

    def kill(self) -> None:
        self.expected_exit = True
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def expect_death(self, timeout_s: float) -> bool:
        """Wait for the process to die by the hand it was armed with."""
        self.expected_exit = True
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

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


@dataclass(eq=False)
class Sent:
    """One message of the stream and what the broker made of it."""

    topic: str
    key: bytes | None
    value: bytes | None
    planned: Planned | None = None
    invalid: Invalid | None = None
    barrier: int = 0  # status records its connection must have on the topic first
    position: float = 0.0
    acked: bool = False
    sends: int = 0
    partition: int = -1
    offset: int = -1

    @property
    def connection_id(self) -> str | None:
        return None if self.planned is None else self.planned.event.connection_id


class Producer(threading.Thread):
    """Publishes the stream in order of position, paced to end at `deadline`. A message with
    a barrier waits, with the rest of its connection, until the reader has seen that many of
    the connection's status records: as a real pipeline starts a new session once syncstatus
    said the last one ended. Unacknowledged sends go again, same bytes."""

    TICK_S = 0.05

    def __init__(self, settings: Settings, messages: list[Sent], reader: Reader) -> None:
        super().__init__(name="producer", daemon=True)
        self.settings, self.messages, self.reader = settings, messages, reader
        self.deadline = math.inf
        self.published = 0
        self.resent = 0
        self.republished = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.paused = threading.Event()
        self._detach = threading.Event()
        self.detached = threading.Event()
        self._lost: list[Sent] = []
        self._producer: KafkaProducer | None = None
        self._pending: list[tuple[Sent, Any]] = []

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()
            if self._producer is not None:
                self._producer.close(timeout=5)

    def detach(self) -> None:
        """Before a broker restart, while paused: drop the producer with whatever it still
        buffers (sent later to the new broker, it could overtake what is sent again), and keep
        every unacknowledged message to send again from the ledger once unpaused."""
        self.detached.clear()
        self._detach.set()

    def _client(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                **client_config(self.settings),
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_request_size=4 << 20,
            )
        return self._producer

    def _send(self, message: Sent) -> None:
        message.sends += 1
        future = self._client().send(message.topic, key=message.key, value=message.value)
        self._pending.append((message, future))

    def _run(self) -> None:
        queue = sorted(self.messages, key=lambda m: m.position)
        held: dict[str, list[Sent]] = defaultdict(list)
        total, index, started = len(queue), 0, time.monotonic()
        while index < total or held or self._pending or self._lost:
            if self._detach.is_set():
                self._drop_client()
            if self.paused.is_set():
                time.sleep(self.TICK_S)
                continue
            lost, self._lost = self._lost, []
            for message in lost:
                self._send(message)
            span = max(self.deadline - started, 1.0)
            due = (time.monotonic() - started) / span
            while index < total and queue[index].position <= due:
                message = queue[index]
                index += 1
                cid = message.connection_id
                if cid is not None and (held.get(cid) or not self._open(message)):
                    held[cid].append(message)
                else:
                    self._send(message)
            self._release(held)
            self._settle()
            self.published = index - sum(len(h) for h in held.values())
            time.sleep(self.TICK_S)
        self._client().flush(10)

    def _drop_client(self) -> None:
        self._detach.clear()
        if self._producer is not None:
            self._producer.close(timeout=0)
            self._producer = None
        self._lost = [message for message, _ in self._pending]
        self._pending, self.republished = [], self.republished + len(self._lost)
        self.detached.set()

    def _open(self, message: Sent) -> bool:
        return self.reader.records_of(message.connection_id) >= message.barrier

    def _release(self, held: dict[str, list[Sent]]) -> None:
        for cid in list(held):
            while held[cid] and self._open(held[cid][0]):
                self._send(held[cid].pop(0))
            if not held[cid]:
                del held[cid]

    def _settle(self) -> None:
        still, failed = [], []
        for message, future in self._pending:
            if not future.is_done:
                still.append((message, future))
            elif future.succeeded():
                metadata = future.value
                message.acked, message.partition, message.offset = (
                    True,
                    metadata.partition,
                    metadata.offset,
                )
            else:
                failed.append(message)
        self._pending = still
        for message in failed:
            self.resent += 1
            self._send(message)


@dataclass(frozen=True)
class Record:
    """A status record as it came off the topic."""

    arrived: float
    fields: dict[str, Any]


class Reader(threading.Thread):
    """Reads the status and dead-letter topics from the beginning, without a group; `reset`
    after a broker restart starts again on the new, empty topics, keeping what it read."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="reader", daemon=True)
        self.settings = settings
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.dead_letters: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._reset = threading.Event()
        self._distinct: dict[str, set[int]] = defaultdict(set)
        self._messages = StatusChangeMessages()

    def run(self) -> None:
        reader = self._open()
        try:
            while not self.stop.is_set():
                if self._reset.is_set():
                    reader.close()
                    reader = self._open()
                    self._reset.clear()
                self._take(reader.poll(100))
        except BaseException as error:
            self.error = error
        finally:
            reader.close()

    def _open(self) -> TopicReader:
        topics = [self.settings.topic_status, self.settings.topic_dead_letter]
        return TopicReader(client_config(self.settings), topics, from_beginning=True)

    def reset(self) -> None:
        self._reset.set()

    def _take(self, polled: list[Any]) -> None:
        now = time.monotonic()
        with self.lock:
            for record in polled:
                if record.topic == self.settings.topic_status:
                    change = self._messages.decode(record.value)
                    cid = change["connection_id"]
                    self.records[cid].append(Record(now, change))
                    self._distinct[cid].add(change["sequence"])
                else:
                    headers = {k: v for k, v in record.headers or []}
                    self.dead_letters.append((record.key, record.value, headers))

    def records_of(self, connection_id: str) -> int:
        with self.lock:
            return len(self._distinct.get(connection_id, ()))

    def distinct_records(self) -> int:
        with self.lock:
            return sum(len(s) for s in self._distinct.values())

    def count(self) -> int:
        with self.lock:
            return sum(len(r) for r in self.records.values())

    def first_recorded_after(self, wall: float) -> float | None:
        """When the first status record the service made at or after `wall` arrived."""
        with self.lock:
            arrivals = [
                r.arrived
                for records in self.records.values()
                for r in records
                if r.fields["recorded_at"].timestamp() >= wall
            ]
        return min(arrivals, default=None)


def encode_story_messages(
    settings: Settings, planned: list[Planned], barriers: list[int]
) -> list[Sent]:
    topics, messages = family_topics(settings), EventMessages()
    return [
        Sent(
            topics[p.event.type.family],
            p.event.connection_id.encode(),
            messages.encode(p.event),
            planned=p,
            barrier=barrier,
        )
        for p, barrier in zip(planned, barriers, strict=True)
    ]


def invalid_sent(settings: Settings, invalid: list[Invalid]) -> list[Sent]:
    topics = family_topics(settings)
    return [Sent(topics[i.topic_family], i.key, i.value, invalid=i) for i in invalid]
