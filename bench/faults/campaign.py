"""Running a campaign: the servers, the service processes, the stream, the faults, the verdict."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.faults import judge
from bench.faults.faults import INJECT, KINDS, Fault, plan
from bench.faults.oracle import Expected, expected
from bench.faults.processes import (
    Producer,
    Reader,
    Sent,
    ServiceProcess,
    encode_story_messages,
    invalid_sent,
    log,
    tail,
)
from bench.faults.stories import DEDUP_APP, invalid_messages, stories
from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres
from syncstatus.kafka import ensure_topics
from syncstatus.settings import Settings


@dataclass(frozen=True)
class Profile:
    connections: int
    faults: int
    invalid: int
    gap_s: tuple[float, float]
    timeout_s: float  # authorization and stage timeouts, and the park window
    window: float  # fraction of the stream over which one connection's messages spread
    settle_s: float


QUICK = Profile(
    connections=250, faults=10, invalid=36, gap_s=(1.0, 2.0), timeout_s=20, window=0.15, settle_s=60
)
FULL = Profile(
    connections=3000,
    faults=100,
    invalid=240,
    gap_s=(1.5, 4.0),
    timeout_s=30,
    window=0.03,
    settle_s=180,
)
ALLOWANCE_S = 5.0  # what a fault costs beyond its gap and hold, to pace the stream


class Campaign:
    def __init__(
        self, profile: Profile, seed: int, work: Path, log_level: str, mutate_relay: bool
    ) -> None:
        self.profile, self.seed, self.work = profile, seed, work
        self.log_level, self.mutate_relay = log_level, mutate_relay
        self.arms = work / "arms"
        self.arms.mkdir()
        self.postgres = EmbeddedPostgres(work / "pg")
        self.kafka = EmbeddedKafka(log_file=work / "tansu.log")
        self.services: list[ServiceProcess] = []
        self.unexpected_exits: list[str] = []
        self.unclean_stops: list[str] = []
        self.t0 = time.monotonic()

    # -- the parts --

    def start(self) -> None:
        self.postgres.start()
        self.kafka.start()
        self.settings = Settings(
            database_url=self.postgres.url,
            bootstrap_servers=self.kafka.bootstrap_servers,
            deduplication_apps={DEDUP_APP},
            authorization_timeout_s=self.profile.timeout_s,
            stage_timeout_s=self.profile.timeout_s,
            park_window_s=self.profile.timeout_s,
        )
        ensure_topics(self.settings)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SYNCSTATUS_")},
            "SYNCSTATUS_DATABASE_URL": self.postgres.url,
            "SYNCSTATUS_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "SYNCSTATUS_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "SYNCSTATUS_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "SYNCSTATUS_DELIVERY_TIMEOUT_MS": "5000",
            "SYNCSTATUS_DEDUPLICATION_APPS": f'["{DEDUP_APP}"]',
            "SYNCSTATUS_AUTHORIZATION_TIMEOUT_S": str(self.profile.timeout_s),
            "SYNCSTATUS_STAGE_TIMEOUT_S": str(self.profile.timeout_s),
            "SYNCSTATUS_PARK_WINDOW_S": str(self.profile.timeout_s),
            "SYNCSTATUS_LOG_LEVEL": self.log_level,
            "BENCH_FAULTS_ARMS": str(self.arms),
            "BENCH_FAULTS_MUTATE_RELAY": "1" if self.mutate_relay else "0",
        }

    def start_service(self, role: str) -> ServiceProcess:
        index = sum(1 for s in self.services if s.name.startswith(role)) + 1
        service = ServiceProcess(f"{role}{index}", self.env, self.work)
        self.services.append(service)
        return service

    def arm(self, point: str) -> None:
        (self.arms / point).touch()

    def armed(self, point: str) -> bool:
        return (self.arms / point).exists()

    def disarm(self, point: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.arms / point).unlink()

    def at(self, moment: float) -> str:
        return f"t+{moment - self.t0:6.1f}s"

    def supervise(self) -> None:
        """A process that dies on its own is noted and, if it was the primary, restarted."""
        for service in self.services:
            if not service.expected_exit and not service.alive():
                service.expected_exit = True
                self.unexpected_exits.append(
                    f"{service.name} exited with {service.process.returncode}"
                )
                moment = self.at(time.monotonic())
                log(f"{moment} !! {service.name} exited on its own:\n{tail(service.log_file)}")
                if service is self.primary:
                    self.primary = self.start_service("service-a")
        for thread in (self.producer, self.reader):
            if thread.error is not None:
                raise RuntimeError(f"the {thread.name} thread failed") from thread.error

    def wait_until(self, condition: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervise()
            if condition():
                return True
            time.sleep(0.1)
        return condition()

    def drained(self) -> bool:
        """Everything the producer had acknowledged is consumed, recorded and read back."""
        acked = [m for m in self.sent if m.acked]
        try:
            counts = self._counts()
        except sa.exc.OperationalError:
            return False
        claimed, dead, history, unpublished = counts
        events = {m.planned.event.event_id for m in acked if m.planned is not None}
        return (
            claimed >= len(events)
            and dead >= sum(1 for m in acked if m.invalid is not None)
            and unpublished == 0
            and self.reader.distinct_records() >= history
        )

    def _counts(self) -> tuple[int, int, int, int]:
        """What the service claimed, dead-lettered, recorded, and has yet to publish; the
        database may be down, killed by the campaign itself."""
        with self.database.connect() as db:
            return db.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM processed_events), "
                    "(SELECT count(*) FROM dead_letters), (SELECT count(*) FROM status_history), "
                    "(SELECT count(*) FROM outbox WHERE published_at IS NULL) + "
                    "(SELECT count(*) FROM dead_letters WHERE published_at IS NULL)"
                )
            ).one()

    # -- the run --

    def prepare(self) -> None:
        rng = random.Random(self.seed)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        told = stories(rng, self.profile.connections, start)
        timeouts = {"authorization": self.profile.timeout_s, "stage": self.profile.timeout_s}
        self.expected: dict[str, Expected] = {
            s.connection_id: expected(s, frozenset({DEDUP_APP}), timeouts) for s in told
        }
        self.sent: list[Sent] = []
        for story in told:
            want = self.expected[story.connection_id]
            barriers = [
                want.before[i] if _opens_a_phase(story.messages, i) else 0
                for i in range(len(story.messages))
            ]
            messages = encode_story_messages(self.settings, story.messages, barriers)
            begin = rng.random() * (1 - self.profile.window)
            for k, message in enumerate(messages):
                message.position = begin + self.profile.window * (k + rng.random() * 0.9) / len(
                    messages
                )
            self.sent += messages
        invalid = invalid_sent(
            self.settings,
            invalid_messages(rng, self.profile.invalid, self.settings.max_message_bytes),
        )
        for message in invalid:
            message.position = rng.random()
        self.sent += invalid
        self.faults: list[Fault] = plan(self.profile.faults, self.seed, self.profile.gap_s)
        self.scenarios = {s.scenario for s in told}
        log(
            f"stream (seed {self.seed}): {len(told)} connections in "
            f"{len(self.scenarios)} scenarios, "
            f"{sum(len(s.messages) for s in told)} events, {len(invalid)} invalid messages, "
            f"{sum(len(e.records) for e in self.expected.values())} status records expected; "
            f"faults: {len(self.faults)} of {len({f.kind for f in self.faults})} kinds"
        )

    def run(self) -> judge.Verdict:
        self.start()
        self.database = sa.create_engine(self.postgres.url)
        self.prepare()
        self.primary = self.start_service("service-a")
        self.reader = Reader(self.settings)
        self.producer = Producer(self.settings, self.sent, self.reader)
        if not self.wait_until(lambda: self.primary.assigned_partitions() > 0, 60):
            raise RuntimeError(f"the service got no partitions:\n{tail(self.primary.log_file)}")
        self.reader.start()
        self.t0 = time.monotonic()
        self.producer.deadline = self.t0 + sum(
            f.gap_s + f.hold_s + ALLOWANCE_S for f in self.faults
        )
        self.producer.start()
        log(f"{self.at(self.t0)} service up ({self.primary.name}); publishing")
        self.run_faults()
        self.producer.deadline = time.monotonic()
        self.wait_until(self.producer.done.is_set, 120)
        log(f"{self.at(time.monotonic())} stream published ({self.producer.resent} sends repeated)")
        settled = self.wait_until(self.complete, self.profile.settle_s)
        outcome = "every expected record and dead letter is out" if settled else "NOT settled"
        log(f"{self.at(time.monotonic())} {outcome}")
        for service in self.services:
            if service.alive() and (code := service.terminate()) != 0:
                self.unclean_stops.append(f"{service.name} exit code {code} on SIGTERM")
        time.sleep(1.0)
        self.reader.stop.set()
        self.reader.join(10)
        return self.verdict(settled)

    def run_faults(self) -> None:
        for number, fault in enumerate(self.faults, 1):
            self.wait_until(lambda: False, fault.gap_s)
            fault.injected = time.monotonic()
            INJECT[fault.kind](self, fault)
            fault.ended, fault.ended_wall = time.monotonic(), time.time()
            notes = "; ".join(fault.notes)
            log(
                f"{self.at(fault.injected)} fault {number}/{len(self.faults)} {fault.kind}: "
                + notes
            )
            if self.wait_until(
                lambda f=fault: self.reader.first_recorded_after(f.ended_wall) is not None, 60
            ):
                fault.recovered = self.reader.first_recorded_after(fault.ended_wall)

    def complete(self) -> bool:
        seen = all(
            self.reader.records_of(cid) >= len(want.records) for cid, want in self.expected.items()
        )
        refusals = sum(len(want.refusals) for want in self.expected.values())
        invalid = sum(1 for m in self.sent if m.invalid is not None)
        return seen and len(self.reader.dead_letters) >= refusals + invalid

    def verdict(self, settled: bool) -> judge.Verdict:
        verdict = judge.Verdict()
        judge.judge_topic(verdict, self.expected, self.reader.records)
        leftovers = judge.judge_tables(verdict, self.expected, self.postgres.url)
        judge.judge_dead_letters(verdict, self.sent, self.expected, self.reader.dead_letters)
        if not settled:
            verdict.problems.append("the outputs did not settle")
        unrecovered = [f.kind for f in self.faults if f.recovered is None]
        if unrecovered:
            verdict.problems.append(
                f"no progress after {len(unrecovered)} faults ({', '.join(unrecovered)})"
            )
        if len({f.kind for f in self.faults}) < min(6, len(KINDS)):
            verdict.problems.append("fewer than six kinds of fault")
        verdict.problems += [f"unexpected exit: {e}" for e in self.unexpected_exits]
        verdict.problems += [f"unclean stop: {e}" for e in self.unclean_stops]
        log("== faults ==")
        for number, f in enumerate(self.faults, 1):
            recovery = "never" if f.recovery_s is None else f"{f.recovery_s:.1f} s"
            log(f"  {number:3d}. {f.kind:24s} recovery {recovery:>7s}  {'; '.join(f.notes)}")
        log(f"== verdict == left over: {leftovers}; producer sends repeated {self.producer.resent}")
        judge.report(verdict)
        return verdict

    def worst_recovery(self) -> float:
        recoveries = [f.recovery_s for f in self.faults if f.recovery_s is not None]
        if any(f.recovered is None for f in self.faults):
            return math.inf
        return max(recoveries, default=math.nan)

    def print_logs(self) -> None:
        for service in self.services:
            log(f"--- {service.log_file}\n{tail(service.log_file)}")
        log(f"--- tansu\n{tail(self.work / 'tansu.log')}")

    def stop(self) -> None:
        for service in self.services:
            if service.alive():
                service.terminate(10)
        for thread in (getattr(self, "producer", None), getattr(self, "reader", None)):
            if thread is not None:
                thread.deadline = 0
                getattr(thread, "stop", None) and thread.stop.set()
        with contextlib.suppress(Exception):
            self.kafka.resume()
        self.kafka.stop()
        self.postgres.stop()


def _opens_a_phase(messages: list, index: int) -> bool:
    """A message that starts a new session, or a connection-wide status change: it must follow
    what came before, as a real producer's would once syncstatus said so."""
    planned = messages[index]
    if planned.expect != "apply" or not planned.event.type.changes_status or index == 0:
        return False
    previous = next(
        (
            p
            for p in reversed(messages[:index])
            if p.expect == "apply" and p.event.type.changes_status
        ),
        None,
    )
    return previous is not None and (
        previous.event.session_id != planned.event.session_id or planned.event.type.connection_wide
    )
