"""The faults a campaign injects, each a function of the running campaign."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.faults.processes import Producer, Reader, ServiceProcess
from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres
from syncstatus.kafka import ensure_topics
from syncstatus.settings import Settings

KILL = "kill"
KILL_AFTER_COMMIT = "kill-after-db-commit"
KILL_AFTER_ACK = "kill-after-broker-ack"
POSTGRES_KILL = "postgres-kill-9"
BROKER_PAUSE = "broker-pause"
BROKER_RESTART = "broker-restart"
INSTANCE_DIES = "instance-joins-and-dies"
RELAY_DIES = "relay-loop-dies"
KINDS = (
    KILL,
    KILL_AFTER_COMMIT,
    KILL_AFTER_ACK,
    POSTGRES_KILL,
    BROKER_PAUSE,
    BROKER_RESTART,
    INSTANCE_DIES,
    RELAY_DIES,
)


class Campaign(Protocol):
    """What a fault acts on: the running campaign (bench/faults/campaign.py)."""

    primary: ServiceProcess
    postgres: EmbeddedPostgres
    kafka: EmbeddedKafka
    producer: Producer
    reader: Reader
    settings: Settings

    def start_service(self, role: str) -> ServiceProcess: ...
    def wait_until(self, condition: Callable[[], Any], timeout_s: float) -> bool: ...
    def drained(self) -> bool: ...
    def arm(self, point: str) -> None: ...
    def armed(self, point: str) -> bool: ...
    def disarm(self, point: str) -> None: ...


@dataclass
class Fault:
    kind: str
    gap_s: float
    hold_s: float
    injected: float = math.nan
    ended: float = math.nan
    ended_wall: float = math.nan
    recovered: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.ended


def plan(count: int, seed: int, gap_s: tuple[float, float]) -> list[Fault]:
    """`count` faults, every kind at least once when count allows, in a seeded order."""
    rng = random.Random(seed * 7919 + 1)
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    return [Fault(kind, rng.uniform(*gap_s), rng.uniform(0.5, 3.0)) for kind in kinds]


def kill(campaign: Campaign, fault: Fault) -> None:
    victim = campaign.primary
    victim.kill()
    time.sleep(fault.hold_s)
    campaign.primary = campaign.start_service("service-a")
    fault.notes.append(f"killed {victim.name}, restarted after {fault.hold_s:.1f} s")


def _aimed(point: str) -> Callable[[Campaign, Fault], None]:
    def aimed(campaign: Campaign, fault: Fault) -> None:
        victim = campaign.primary
        campaign.arm(point)
        if victim.expect_death(30):
            fault.notes.append(f"{victim.name} killed itself at {point}")
        else:
            campaign.disarm(point)
            victim.kill()
            fault.notes.append(f"{point} never crossed in 30 s; killed {victim.name} instead")
        campaign.primary = campaign.start_service("service-a")

    return aimed


def postgres_kill(campaign: Campaign, fault: Fault) -> None:
    campaign.postgres.kill()
    time.sleep(fault.hold_s)
    campaign.postgres.start()
    fault.notes.append(f"postmaster killed -9, crash recovery after {fault.hold_s:.1f} s")


def broker_pause(campaign: Campaign, fault: Fault) -> None:
    campaign.kafka.pause()
    try:
        time.sleep(fault.hold_s + 2)
    finally:
        campaign.kafka.resume()
    fault.notes.append(f"paused {fault.hold_s + 2:.1f} s")


def broker_restart(campaign: Campaign, fault: Fault) -> None:
    """Tansu keeps nothing across a restart, and clients made before it stay broken: let the
    service drain, stop it, restart the broker, start the service with new clients, and send
    again from the ledger what was in flight."""
    producer = campaign.producer
    producer.paused.set()
    drained = campaign.wait_until(campaign.drained, 60)
    before = producer.republished
    producer.detach()
    producer.detached.wait(10)
    stopped = campaign.primary.terminate()
    campaign.kafka.restart()
    ensure_topics(campaign.settings)
    campaign.reader.reset()
    campaign.primary = campaign.start_service("service-a")
    producer.paused.clear()
    fault.notes.append(
        ("drained" if drained else "NOT drained in 60 s")
        + ("; service stopped" if stopped == 0 else f"; service stop gave {stopped}")
        + f"; broker restarted empty; service restarted; republished "
        f"{producer.republished - before} messages it lost in flight"
    )


def instance_dies(campaign: Campaign, fault: Fault) -> None:
    second = campaign.start_service("service-b")
    joined = campaign.wait_until(lambda: second.assigned_partitions() > 0, 60)
    time.sleep(fault.hold_s)
    second.kill()
    fault.notes.append(
        f"{second.name} {'took partitions' if joined else 'never got partitions'}, "
        f"then SIGKILL after {fault.hold_s:.1f} s"
    )


def relay_dies(campaign: Campaign, fault: Fault) -> None:
    campaign.arm("relay-dies")
    crossed = campaign.wait_until(lambda: not campaign.armed("relay-dies"), 30)
    fault.notes.append(
        "the status relay's loop raised; the rest ran on" if crossed else "never crossed"
    )


INJECT: dict[str, Callable[[Campaign, Fault], None]] = {
    KILL: kill,
    KILL_AFTER_COMMIT: _aimed("after-commit"),
    KILL_AFTER_ACK: _aimed("after-ack"),
    POSTGRES_KILL: postgres_kill,
    BROKER_PAUSE: broker_pause,
    BROKER_RESTART: broker_restart,
    INSTANCE_DIES: instance_dies,
    RELAY_DIES: relay_dies,
}
