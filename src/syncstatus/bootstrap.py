"""The one place that builds the object graph from settings; entry points only call it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

from syncstatus.consumers.event_consumer import EventConsumer
from syncstatus.kafka import client_config, ensure_topics, input_topics
from syncstatus.producers.relay import (
    Oversize,
    Relay,
    command_message,
    dead_letter_message,
    shrunk_dead_letter,
    status_change_message,
)
from syncstatus.runtime.loops import CommandScheduler, RetentionPruner, TimeoutSweeper
from syncstatus.runtime.observability import HttpEndpoint, Metrics, health_app
from syncstatus.runtime.process import Loop, Service
from syncstatus.schemas.messages import CommandMessages, EventMessages, StatusChangeMessages
from syncstatus.service.engine import StatusEngine
from syncstatus.service.ports import StoreError
from syncstatus.settings import Settings
from syncstatus.store.commands import CommandStore
from syncstatus.store.database import create_engine, database_reachable, migrate
from syncstatus.store.notifications import NewRows
from syncstatus.store.outbox import OutboxStore
from syncstatus.store.queries import ConnectionQueries, DeadLetterQueries, StatusQueries
from syncstatus.store.retention import RetentionStore
from syncstatus.store.uow import PostgresStore


@dataclass
class Application:
    settings: Settings
    database: sa.Engine
    engine: StatusEngine
    queries: StatusQueries
    connections: ConnectionQueries
    commands: CommandStore
    dead_letters: DeadLetterQueries

    def close(self) -> None:
        self.database.dispose()


def build(settings: Settings) -> Application:
    database = create_engine(settings.database_url)
    return Application(
        settings=settings,
        database=database,
        engine=StatusEngine(PostgresStore(database), settings.policy()),
        queries=StatusQueries(database),
        connections=ConnectionQueries(database),
        commands=CommandStore(database, settings.policy()),
        dead_letters=DeadLetterQueries(database),
    )


def build_service(application: Application) -> Service:
    """The consumer, both relays and the sweeper, wired to one engine and one database."""
    settings = application.settings
    if settings.migrate_on_start:
        migrate(application.database)
    if settings.create_topics:
        ensure_topics(settings)
    outbox = OutboxStore(application.database)

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            **client_config(settings),
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            max_poll_records=settings.batch_size,
        )

    def producer() -> KafkaProducer:
        return KafkaProducer(
            **client_config(settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_block_ms=10000,
            max_request_size=settings.kafka_max_record_bytes,
            request_timeout_ms=settings.delivery_timeout_ms // 2,
            delivery_timeout_ms=settings.delivery_timeout_ms,
        )

    metrics = Metrics()
    flush_timeout_s = settings.delivery_timeout_ms / 1000 + 5
    event_consumer = EventConsumer(
        consumer,
        application.engine,
        input_topics(settings),
        EventMessages(settings.event_limits()),
        settings.batch_size,
        metrics.record_batch,
    )

    def relay(name, fetch, to_message, topic: str, table: str, published: str, shrink=None):
        return Relay(
            name,
            fetch,
            to_message,
            producer,
            topic,
            settings.relay_batch_size,
            settings.relay_idle_s,
            flush_timeout_s,
            NewRows(application.database.url, table),
            Oversize(
                settings.kafka_max_record_bytes,
                shrink,
                metrics.oversize.labels(published).inc,
            ),
            metrics.published.labels(published).inc,
        )

    status_relay = relay(
        "status-relay",
        outbox.status_changes,
        status_change_message(StatusChangeMessages()),
        settings.topic_status,
        "outbox",
        "status",
    )
    whole_dead_letter = dead_letter_message(EventMessages())
    dead_letter_relay = relay(
        "dead-letter-relay",
        outbox.dead_letters,
        whole_dead_letter,
        settings.topic_dead_letter,
        "dead_letters",
        "dead-letter",
        shrunk_dead_letter(whole_dead_letter),
    )
    command_relay = relay(
        "command-relay",
        application.commands.unpublished,
        command_message(CommandMessages()),
        settings.topic_commands,
        "commands",
        "commands",
    )
    scheduler = CommandScheduler(
        application.commands,
        timedelta(seconds=settings.accounts_sync_every_s),
        settings.scheduler_interval_s,
    )
    sweeper = TimeoutSweeper(application.engine, settings.sweep_interval_s, metrics.record_sweep)
    pruner = RetentionPruner(
        RetentionStore(application.database),
        timedelta(seconds=settings.outbox_retention_s),
        timedelta(seconds=settings.idempotency_retention_s),
        settings.prune_interval_s,
    )
    service = Service(
        [
            Loop("consumer", event_consumer.run),
            Loop("status-relay", status_relay.run),
            Loop("dead-letter-relay", dead_letter_relay.run),
            Loop("sweeper", sweeper.run),
            Loop("pruner", pruner.run),
            Loop("command-relay", command_relay.run),
            Loop("scheduler", scheduler.run),
        ],
        on_failure=lambda name: metrics.loop_failures.labels(name).inc(),
    )

    def backlog(table: str, index: int) -> float:
        try:
            return float(outbox.backlog(table)[index])
        except StoreError:
            return float("nan")

    for table, name in (
        ("outbox", "status"),
        ("dead_letters", "dead-letter"),
        ("commands", "commands"),
    ):
        metrics.relay_backlog.labels(name).set_function(lambda t=table: backlog(t, 0))
        metrics.relay_oldest_age.labels(name).set_function(lambda t=table: backlog(t, 1))
    metrics.assigned_partitions.set_function(lambda: len(event_consumer.assignment))

    def ready() -> tuple[bool, dict[str, bool]]:
        checks = {
            "database": database_reachable(application.database),
            "partitions_assigned": bool(event_consumer.assignment),
            "loops_running": not service.failing,
        }
        return all(checks.values()), checks

    app = health_app(metrics, lambda: not service.stop.is_set(), ready)
    endpoint = HttpEndpoint(
        app, settings.metrics_port, settings.metrics_host, settings.api_request_timeout_s
    )
    service.loops.append(Loop("http", endpoint.run))
    return service
