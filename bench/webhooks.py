"""Webhook deliveries to a local receiver: deliveries/s, and the latency from the engine's
decision to the receiver.

    python -m bench.webhooks [--connections 1000] [--subscriptions 4] [--rate 200]
                             [--duration 10] [--latency-only] [--set NAME=VALUE ...]

Starts its own EmbeddedPostgres (in a temp dir), a receiver and the webhook relay of
`syncstatus run`, each in a process of its own (spawned, so each has its own GIL), and
measures:

1. throughput: `--connections` connections go Authorization → Synced (14 status changes each,
   the `bench.engine` flow) through the engine first; then one subscription, created from the
   beginning of the feed, receives all of them, and then `--subscriptions` subscriptions at
   once do; deliveries/s = deliveries / (first → last arrival at the receiver);
2. latency at a fixed offered load: with one subscription delivering from now, the engine
   records `--rate` status changes/s (a batch every 20 ms) for `--duration` seconds; per
   record, from `recorded_at` (the engine's decision, its wall clock) to the receiver's wall
   clock when the whole request had arrived: p50/p95/p99/max, and the two legs: decision →
   its transaction committed (the engine), committed → received (the feed and the relay).

The receiver is `tests.helpers.webhook_receiver` (Python's threading HTTP/1.1 server, keep-alive):
it answers 200 at once, verifies nothing (the tests do), and reports duplicates (same
`webhook-id`) and any connection whose sequences arrived out of order. The relay runs with
the service's defaults unless changed with `--set NAME=VALUE` (any Settings field);
`webhook_allow_http_loopback` is on.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import multiprocessing.connection
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from tests.helpers.streams import FLOW, stream
from tests.helpers.webhook_receiver import Receiver, always

from syncstatus.devtools.embedded import EmbeddedPostgres
from syncstatus.producers.webhook_delivery import new_secret
from syncstatus.schemas.changes import BEGINNING, ChangeFilter
from syncstatus.service.inbound import Inbound
from syncstatus.settings import Settings
from syncstatus.store.database import create_engine, migrate

TICK_S = 0.02


# --- the receiver (its own process) ----------------------------------------------------------


def _receiver_main(pipe: multiprocessing.connection.Connection, seen: Any) -> None:
    receiver = Receiver(always(200)).start()
    offset = time.time() - time.monotonic()
    pipe.send(receiver.url(""))
    while not pipe.poll(0.02):
        seen.value = len(receiver.received)
    pipe.recv()
    arrivals: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for r in receiver.received:
        change = json.loads(r.body)["data"]
        recorded = datetime.fromisoformat(change["recorded_at"]).timestamp()
        arrivals[r.path].append(
            (
                r.headers["webhook-id"],
                change["connection_id"],
                change["sequence"],
                recorded,
                r.at + offset,
                change["cause_event_id"],
            )
        )
    receiver.stop()
    pipe.send(dict(arrivals))


class ReceiverProcess:
    def __init__(self) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.seen = context.Value("q", 0, lock=False)
        self.process = context.Process(
            target=_receiver_main, args=(child, self.seen), name="receiver", daemon=True
        )
        self.process.start()
        if not self._pipe.poll(30):
            raise RuntimeError("the receiver did not start")
        self.base = self._pipe.recv()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.seen.value < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def collect(self) -> dict[str, list[tuple[Any, ...]]]:
        self._pipe.send("stop")
        if not self._pipe.poll(120):
            raise RuntimeError("the receiver did not answer")
        arrivals = self._pipe.recv()
        self.process.join(10)
        return arrivals


# --- the relay (its own process) -------------------------------------------------------------


def _relay_main(settings: dict[str, Any], pipe: multiprocessing.connection.Connection) -> None:
    from syncstatus.bootstrap import _webhook_relay, build
    from syncstatus.runtime.logs import configure_logging
    from syncstatus.runtime.metrics import Metrics

    application = build(Settings(**settings))
    configure_logging(application.settings.log_level, application.settings.log_json)
    loop = _webhook_relay(application, Metrics())
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    pipe.send("ready")
    pipe.recv()
    stop.set()
    thread.join(30)
    application.close()
    pipe.send("stopped")


class RelayProcess:
    def __init__(self, settings: dict[str, Any]) -> None:
        context = mp.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=_relay_main, args=(settings, child), name="webhook-relay", daemon=True
        )
        self.process.start()
        if not self._pipe.poll(60) or self._pipe.recv() != "ready":
            raise RuntimeError("the webhook relay did not start")

    def stop(self) -> None:
        self._pipe.send("stop")
        self._pipe.poll(60)
        self.process.join(10)


# --- the measures ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def checked(arrivals: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Duplicates (a webhook-id seen again) and connections whose sequences went back."""
    ids = [a[0] for a in arrivals]
    last: dict[str, int] = {}
    disorder = 0
    for _, connection_id, sequence, *_ in arrivals:
        if sequence <= last.get(connection_id, 0):
            disorder += 1
        last[connection_id] = sequence
    return len(ids) - len(set(ids)), disorder


def record_backlog(application: Any, connections: int) -> int:
    events = stream(connections, "bench", datetime.now(UTC) - timedelta(hours=1), "bench")
    for i in range(0, len(events), 1000):
        application.engine.apply_batch([Inbound(e) for e in events[i : i + 1000]])
    return len(events)


def throughput(
    application: Any, receiver: ReceiverProcess, subscriptions: int, total: int, offset: int
) -> list[str]:
    """Paths of `subscriptions` new subscriptions from the feed's beginning, once each has
    received all `total` records."""
    paths = [f"/t{subscriptions}-{i}" for i in range(subscriptions)]
    created = [
        application.webhooks.create(
            receiver.base + path, "bench", ChangeFilter(), "bench", new_secret(), BEGINNING
        )
        for path in paths
    ]
    if not receiver.wait_for(offset + total * subscriptions, timeout_s=600):
        raise RuntimeError(f"throughput with {subscriptions}: not all delivered in 600 s")
    for subscription in created:  # so that they take no part in what follows
        application.webhooks.delete(subscription.id, scope=None)
    return paths


def paced(application: Any, rate: float, duration_s: float) -> dict[str, float]:
    """The flow of enough connections, `rate` status changes a second for `duration_s`, a
    batch every TICK_S; when each event's transaction had committed (wall clock), by id."""
    count = int(rate * duration_s)
    connections = max(1, math.ceil(count / len(FLOW)))
    events = stream(connections, f"paced-{uuid.uuid4().hex[:6]}", datetime.now(UTC), "bench")
    events = events[:count]
    committed: dict[str, float] = {}
    started = time.monotonic()
    done = 0
    while done < len(events):
        due = min(len(events), math.ceil((time.monotonic() - started) * rate))
        if due > done:
            batch = events[done:due]
            application.engine.apply_batch([Inbound(e) for e in batch])
            at = time.time()
            committed.update((str(e.event_id), at) for e in batch)
            done = due
        time.sleep(TICK_S)
    return committed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1000, help="throughput connections")
    parser.add_argument("--subscriptions", type=int, default=4, help="the parallel phase's")
    parser.add_argument("--rate", type=float, default=200, help="latency phase changes/s")
    parser.add_argument("--duration", type=float, default=10, help="latency phase seconds")
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput phases")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    overrides = dict(item.split("=", 1) for item in args.set)
    from syncstatus.bootstrap import build

    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pg") as server:
        url = server.create_database(f"webhooks_{uuid.uuid4().hex[:8]}")
        db = create_engine(url)
        migrate(db)
        db.dispose()
        settings = {
            "database_url": url,
            "webhook_allow_http_loopback": True,
            "log_level": "WARNING",
            **overrides,
        }
        application = build(Settings(**settings))
        receiver = ReceiverProcess()
        total = 0 if args.latency_only else record_backlog(application, args.connections)
        relay = RelayProcess(settings)
        one: list[str] = []
        many: list[str] = []
        try:
            if not args.latency_only:
                one = throughput(application, receiver, 1, total, 0)
                many = throughput(application, receiver, args.subscriptions, total, total)
            application.webhooks.create(
                receiver.base + "/paced", "bench", ChangeFilter(), "bench", new_secret()
            )
            time.sleep(1)
            committed = paced(application, args.rate, args.duration)
            offered = len(committed)
            if not receiver.wait_for(total * (1 + args.subscriptions) + offered, 120):
                print("latency: not all delivered within 120 s")
        finally:
            relay.stop()
            arrivals = receiver.collect()
            application.close()
    report(args, total, arrivals, one, many, committed)


def report(
    args: argparse.Namespace,
    total: int,
    arrivals: dict[str, list[tuple[Any, ...]]],
    one: list[str],
    many: list[str],
    committed: dict[str, float],
) -> None:
    offered = len(committed)
    problems = []
    rates = {}
    for label, paths in (("1 subscription", one), (f"{len(many)} subscriptions", many)):
        if not paths:
            continue
        got = [a for path in paths for a in arrivals.get(path, [])]
        span = max(a[4] for a in got) - min(a[4] for a in got)
        rates[label] = len(got) / span
        for path in paths:
            duplicates, disorder = checked(arrivals.get(path, []))
            if duplicates or disorder or len(arrivals.get(path, [])) != total:
                problems.append(f"{path}: {duplicates} duplicates, {disorder} out of order")
        print(
            f"throughput, {label}: {len(got):,} deliveries ({args.connections:,} connections × "
            f"{len(FLOW)}{f' × {len(paths)}' if len(paths) > 1 else ''}) in {span:.2f} s = "
            f"{rates[label]:,.0f} deliveries/s"
            + (f" ({rates[label] / len(paths):,.0f} per subscription)" if len(paths) > 1 else "")
        )
    if len(rates) == 2:
        first, second = rates.values()
        print(f"  {len(many)} subscriptions / 1: {second / first:.2f}x the deliveries/s")
    paced_arrivals = arrivals.get("/paced", [])
    latencies = sorted((a[4] - a[3]) * 1000 for a in paced_arrivals)
    if latencies:
        p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
        print(
            f"latency: {len(latencies):,} deliveries at {args.rate:,.0f} status changes/s "
            f"offered for {args.duration:.0f} s, decision (recorded_at) → received: "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
        )
        legs = (
            ("decision → committed", [committed[a[5]] - a[3] for a in paced_arrivals]),
            ("committed → received", [a[4] - committed[a[5]] for a in paced_arrivals]),
        )
        for name, seconds in legs:
            ms = sorted(x * 1000 for x in seconds)
            print(
                f"  {name}: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
                f"max {ms[-1]:.1f} ms"
            )
    duplicates, disorder = checked(paced_arrivals)
    if len(paced_arrivals) != offered or duplicates or disorder:
        problems.append(
            f"/paced: {len(paced_arrivals)}/{offered} received, {duplicates} duplicates, "
            f"{disorder} out of order"
        )
    print(f"problems: {'; '.join(problems) or 'none (no duplicate, none out of order, none lost)'}")


if __name__ == "__main__":
    main()
