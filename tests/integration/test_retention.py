"""Under a long run the outbox and the idempotency keys stay bounded; history is kept."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from syncstatus.service.commands import CommandService
from syncstatus.service.engine import StatusEngine
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.connection import Policy
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from syncstatus.store.retention import RetentionStore
from syncstatus.store.uow import PostgresStore
from tests.helpers.factories import event

from .support import OutputReader, publisher_for, running_service, settings_for
from .test_pipeline import E, make

ROUNDS, PER_ROUND = 8, 100
FLOW = [
    E.AUTHORIZATION_STARTED,
    E.AUTHORIZATION_SUCCEEDED,
    E.AUTHORIZATION_STARTED,
    E.AUTHORIZATION_SUCCEEDED,
]


def counts(database_url: str) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        result = {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("outbox", "processed_events", "status_history")
        }
    engine.dispose()
    return result


def test_outbox_and_idempotency_keys_stay_bounded_while_history_grows(kafka, database_url):
    settings = settings_for(
        kafka, database_url, outbox_retention_s=1, idempotency_retention_s=1, prune_interval_s=0.3
    )
    reader, publisher = OutputReader(settings), publisher_for(settings)
    per_round = PER_ROUND * len(FLOW)
    samples = []
    with running_service(settings):
        for round_ in range(ROUNDS):
            start = datetime.now(UTC)
            for c in range(PER_ROUND):
                cid = f"r{round_}-{c}-{uuid.uuid4().hex[:4]}"
                for i, kind in enumerate(FLOW):
                    publisher.publish(make(kind, cid, "facebook_ads", start + timedelta(seconds=i)))
            publisher.flush()
            reader.wait_for(
                lambda seen, n=round_: sum(map(len, seen.changes.values())) >= (n + 1) * per_round
            )
            time.sleep(1.2)
            samples.append(counts(database_url))
    reader.close()
    publisher.close()
    assert samples[-1]["status_history"] == ROUNDS * per_round
    for sample in samples:
        assert sample["outbox"] <= 2 * per_round, samples
        assert sample["processed_events"] <= 2 * per_round, samples


def test_the_schedulers_published_commands_are_pruned_and_peoples_commands_kept(db_engine):
    engine = StatusEngine(PostgresStore(db_engine), Policy())
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1"))
    engine.apply_event(event(E.AUTHORIZATION_SUCCEEDED, "c1"))
    commands = CommandService(PostgresStore(db_engine), Policy())
    commands.issue("c1", CommandType.RECONNECT, "api", scope=ALL)
    now = datetime.now(UTC)
    assert commands.schedule_due(now, timedelta(days=1), 10) == 1
    with db_engine.begin() as connection:
        connection.execute(sa.text("UPDATE commands SET published_at = :t"), {"t": now})
    retention = RetentionStore(db_engine)
    day = timedelta(days=1)
    assert retention.prune(now, day, day).scheduled_commands == 0  # not old enough yet
    assert retention.prune(now + 2 * day, day, day).scheduled_commands == 1
    with db_engine.connect() as connection:
        left = connection.execute(sa.text("SELECT requested_by, command FROM commands")).all()
    assert left == [("api", "RECONNECT")]
