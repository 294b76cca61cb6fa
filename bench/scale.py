"""End-to-end events/s with one `syncstatus run` process and with two in one consumer group.

    python -m bench.scale [--connections 2000] [--rounds 2]

The figure docs/operations.md ("Scaling out") sizes a fleet from. One EmbeddedPostgres and one
EmbeddedKafka (Tansu) serve every measurement; each measurement gets a database and topics of
its own (input topics of 4 partitions, 12 in all), starts 1 or 2 service processes
(bench.pipeline.ServiceProcess, the settings bench.soak gives them, each its own metrics
port), waits until the group's partitions are all assigned (`syncstatus_consumer_assigned_
partitions` on each /metrics, 12 in total and every process holding some), runs a warm-up,
then publishes every connection's Authorization → Synced (14 events, bench.pipeline's
throughput phase) as fast as it can. events/s = events / (first publish → last StatusChanged
record on the status topic, read by bench.pipeline.StatusReader in its own process).

Both process counts share one machine with the publisher, the reader, Tansu and PostgreSQL,
so the ratio two/one answers "does a second process on the same partitions and the same
database add throughput here", not "what would a second machine add"; the CPU line per
measurement (bench.pipeline.Cpu) shows where the cores went. The order alternates (1, 2, 2,
1, ...) so drift in the machine's other load falls on both sides, and each round's ratio is
printed beside the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from tests.helpers.service_metrics import assigned_partitions
from tests.helpers.streams import FLOW

from bench.pipeline import (
    Cpu,
    ServiceProcess,
    StatusReader,
    _one,
    _postgres_processes,
    _still_running,
    flow_events,
    publish_fast,
    workdir,
)
from bench.soak import service_values
from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from syncstatus.kafka import client_config, ensure_topics, family_topics
from syncstatus.producers.publisher import EventPublisher
from syncstatus.settings import Settings

INPUT_PARTITIONS = 12  # three input topics of the default 4 partitions
WARMUP_CONNECTIONS = 20


@dataclass
class Measured:
    processes: int
    events: int
    seconds: float
    missing: int
    cpu: str

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def wait_assigned(ports: list[int], services: list[ServiceProcess], timeout_s: float) -> None:
    """Until the group is stable: every process holds partitions and together all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for service in services:
            service.check_alive()
        shares = [assigned_partitions(port) for port in ports]
        if all(shares) and sum(shares) == INPUT_PARTITIONS:
            return
        time.sleep(0.2)
    raise RuntimeError(f"partitions not shared within {timeout_s} s: {shares}")


def new_database(postgres: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(postgres.url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres.url_for(name)


def start(
    values: dict[str, str], count: int, work: Path, prefix: str
) -> tuple[list[ServiceProcess], list[int]]:
    services, ports = [], []
    for i in range(count):
        port = int(values["metrics_port"]) if i == 0 else free_port()
        ports.append(port)
        services.append(
            ServiceProcess({**values, "metrics_port": str(port)}, work / f"{prefix}-{i}.log")
        )
    return services, ports


def measure(
    postgres: EmbeddedPostgres,
    kafka: EmbeddedKafka,
    count: int,
    args: argparse.Namespace,
    work: Path,
) -> Measured:
    """One measurement on a database and topics of its own."""
    prefix = f"p{count}{uuid.uuid4().hex[:6]}"
    values = service_values(prefix, new_database(postgres, prefix), kafka.bootstrap_servers)
    settings = Settings(**values)
    ensure_topics(settings)
    reader = StatusReader(settings)
    publisher = EventPublisher(client_config(settings), family_topics(settings))
    services: list[ServiceProcess] = []
    try:
        services, ports = start(values, count, work, prefix)
        wait_assigned(ports, services, args.timeout)

        def alive() -> None:
            for service in services:
                service.check_alive()

        warmup = flow_events(f"{prefix}-warm", WARMUP_CONNECTIONS, datetime.now(UTC))
        publish_fast(publisher, warmup)
        if not reader.wait_for(len(warmup), args.timeout, alive):
            raise RuntimeError(f"warm-up did not come back within {args.timeout} s")
        events = flow_events(f"{prefix}-tp", args.connections, datetime.now(UTC))
        cpu = Cpu(
            {
                **{f"service{i + 1}": _one(s.pid) for i, s in enumerate(services)},
                "bench": _one(os.getpid()),
                "reader": _one(reader.process.pid or 0),
                "postgres": _postgres_processes(postgres),
                "tansu": _one(kafka._process.pid if kafka._process else 0),
            }
        )
        cpu.start()
        sent = publish_fast(publisher, events)
        reader.wait_for(len(warmup) + len(events), args.timeout, alive)
        used = cpu.report()
    finally:
        publisher.close()
        for service in services:
            service.stop()
        arrivals, _ = reader.collect() if reader.process.is_alive() else ({}, [])
        reader.close()
    came = [arrivals[i][0] for i in sent if i in arrivals]
    seconds = max(came) - min(sent.values()) if came else 0.0
    return Measured(count, len(events), seconds, len(sent) - len(came), used)


def run(args: argparse.Namespace) -> int:
    order = [1, 2, 2, 1] * ((args.rounds + 1) // 2)
    results: dict[int, list[Measured]] = {1: [], 2: []}
    with (
        workdir(args.workdir) as work,
        EmbeddedPostgres(work / "pg") as postgres,
        EmbeddedKafka(log_file=work / "tansu.log") as kafka,
    ):
        tansu = {"tansu": kafka._process.pid if kafka._process else 0}
        for count in order[: 2 * args.rounds]:
            m = measure(postgres, kafka, count, args, work)
            results[count].append(m)
            print(
                f"{count} process{'es' if count > 1 else ''}: {m.events:,} events "
                f"({args.connections:,} connections × {len(FLOW)}) in {m.seconds:.2f} s = "
                f"{m.rate:,.0f} events/s" + (f"; {m.missing:,} MISSING" if m.missing else ""),
                flush=True,
            )
            print(f"  {m.cpu}", flush=True)
        missing = sum(m.missing for ms in results.values() for m in ms)
    ratios = [two.rate / one.rate for one, two in zip(results[1], results[2], strict=True)]
    one = statistics.median(m.rate for m in results[1])
    two = statistics.median(m.rate for m in results[2])
    print(
        f"summary: one process {one:,.0f} events/s, two processes {two:,.0f} events/s "
        f"(medians of {args.rounds}); ratio two/one {two / one:.2f} "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(f"left running: {', '.join(_still_running(tansu)) or 'nothing'}")
    return 1 if missing else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="connections per run")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each count")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait per phase")
    parser.add_argument("--workdir", help="keep data and logs here instead of a temp dir")
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
