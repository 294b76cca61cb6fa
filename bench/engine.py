"""Events/s of the status engine on embedded PostgreSQL, against the naive approach.

    python -m bench.engine [--connections 2000] [--batch 1000]

Both runs apply the same interleaved stream (every connection goes Authorization → Synced, the
events of many connections mixed as they would arrive from Kafka) to a fresh database. The
engine decides with the table derived from the machine and writes 1,000 events per
transaction; the naive approach builds a python-statemachine instance and commits per event.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from tests.helpers.streams import stream

from syncstatus.devtools.embedded import EmbeddedPostgres
from syncstatus.service.engine import StatusEngine
from syncstatus.service.inbound import Inbound
from syncstatus.statemachine.connection import Policy
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.store.database import create_engine, migrate
from syncstatus.store.uow import PostgresStore

E = EventType


def run_engine(url: str, events: list[SessionEvent], batch: int) -> float:
    engine = StatusEngine(PostgresStore(create_engine(url)), Policy())
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        engine.apply_batch([Inbound(e) for e in events[i : i + batch]])
    return len(events) / (time.perf_counter() - started)


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
    return len(events) / (time.perf_counter() - started)


def fresh_database(server: EmbeddedPostgres, name: str) -> str:
    url = server.create_database(f"{name}_{uuid.uuid4().hex[:8]}")
    db = create_engine(url)
    migrate(db)
    db.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    events = stream(args.connections, producer="bench")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pg") as server:
        engine_rate = run_engine(fresh_database(server, "engine"), events, args.batch)
        naive_rate = run_naive(fresh_database(server, "naive"), events)
    print(
        f"engine: {len(events)} events, {args.connections} connections, "
        f"batch {args.batch}: {engine_rate:,.0f} events/s"
    )
    print(f"naive (machine instance + commit per event), same events: {naive_rate:,.0f} events/s")
    print(f"ratio engine/naive: {engine_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
