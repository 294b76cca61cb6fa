"""The one place that builds the object graph from settings; entry points only call it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa

from syncstatus.consumers.event_consumer import EventConsumer, MessageDecoder
from syncstatus.kafka import consumer_factory, ensure_topics, input_topics, producer_factory
from syncstatus.producers.relay import (
    Message,
    Oversize,
    Relay,
    command_message,
    dead_letter_message,
    redrive_message,
    shrunk_dead_letter,
    status_change_message,
)
from syncstatus.producers.webhook_delivery import HttpSender, RetryPolicy
from syncstatus.producers.webhooks import Delivered, WebhookRelay
from syncstatus.runtime.health import HttpEndpoint, health_app
from syncstatus.runtime.loops import every, prune_retention, schedule_commands, sweep_timeouts
from syncstatus.runtime.metrics import Metrics
from syncstatus.runtime.process import Loop, Service
from syncstatus.schemas.messages import CommandMessages, EventMessages, StatusChangeMessages
from syncstatus.service.commands import CommandService
from syncstatus.service.dead_letters import DeadLetterTriage
from syncstatus.service.engine import StatusEngine
from syncstatus.service.ports import StoreError
from syncstatus.settings import Settings
from syncstatus.store.changes import ChangeQueries
from syncstatus.store.database import create_engine, database_reachable, migrate
from syncstatus.store.dead_letters import DeadLetterQueries
from syncstatus.store.explain import ExplainQueries
from syncstatus.store.notifications import NewRows
from syncstatus.store.outbox import OutboxStore, RelayBatch
from syncstatus.store.queries import ConnectionQueries
from syncstatus.store.retention import RetentionStore
from syncstatus.store.uow import PostgresStore
from syncstatus.store.webhooks import WebhookClaims, WebhookStore


@dataclass
class Application:
    settings: Settings
    database: sa.Engine
    engine: StatusEngine
    connections: ConnectionQueries
    commands: CommandService
    dead_letters: DeadLetterQueries
    triage: DeadLetterTriage
    explain: ExplainQueries
    changes: ChangeQueries
    webhooks: WebhookStore

    def close(self) -> None:
        self.database.dispose()


def build(settings: Settings) -> Application:
    database = create_engine(settings.database_url)
    engine = StatusEngine(PostgresStore(database), settings.policy())
    topics = input_topics(settings)
    return Application(
        settings=settings,
        database=database,
        engine=engine,
        connections=ConnectionQueries(database, settings.app_names),
        commands=CommandService(PostgresStore(database), settings.policy()),
        dead_letters=DeadLetterQueries(database),
        triage=DeadLetterTriage(
            PostgresStore(database),
            engine,
            MessageDecoder(EventMessages(settings.event_limits()), topics),
            topics,
        ),
        explain=ExplainQueries(database, settings.policy()),
        changes=ChangeQueries(database),
        webhooks=WebhookStore(database),
    )


def build_service(application: Application) -> Service:
    """The consumer, the relays and the clock's loops, wired to one engine and one database,
    with /metrics, /healthz and /readyz."""
    settings = application.settings
    if settings.migrate_on_start:
        migrate(application.database)
    if settings.create_topics:
        ensure_topics(settings)
    metrics = Metrics()
    consumer = EventConsumer(
        consumer_factory(settings),
        application.engine,
        input_topics(settings),
        EventMessages(settings.event_limits()),
        settings.batch_size,
        metrics.record_batch,
    )
    service = Service(
        [
            Loop("consumer", consumer.run),
            *_relays(application, metrics),
            *_clock(application, metrics),
        ],
        on_failure=lambda name: metrics.loop_failures.labels(name).inc(),
    )
    _watch_backlogs(metrics, OutboxStore(application.database))
    metrics.watch_webhook_backlogs(partial(_webhook_backlogs, application.webhooks))
    metrics.assigned_partitions.set_function(lambda: len(consumer.assignment))
    service.loops.append(_health(application, metrics, service, consumer))
    return service


def _relays(application: Application, metrics: Metrics) -> list[Loop]:
    """One relay per outbox-like table: status changes, dead letters, commands, redrives
    (each back to the input topic its message came in on); and the webhooks' relay."""
    settings, outbox = application.settings, OutboxStore(application.database)
    whole_dead_letter = dead_letter_message(EventMessages())
    relay = partial(_relay, application, metrics)
    return [
        relay(
            "status-relay",
            outbox.status_changes,
            status_change_message(StatusChangeMessages()),
            settings.topic_status,
            "outbox",
            "status",
        ),
        relay(
            "dead-letter-relay",
            outbox.dead_letters,
            whole_dead_letter,
            settings.topic_dead_letter,
            "dead_letters",
            "dead-letter",
            shrunk_dead_letter(whole_dead_letter),
        ),
        relay(
            "command-relay",
            outbox.commands,
            command_message(CommandMessages()),
            settings.topic_commands,
            "commands",
            "commands",
        ),
        relay("redrive-relay", outbox.redrives, redrive_message, None, "redrives", "redrive"),
        _webhook_relay(application, metrics),
    ]


def _webhook_relay(application: Application, metrics: Metrics) -> Loop:
    """Webhooks: their own loop, threads and database connections, woken by the same
    notification as the status relay but never in its way."""
    settings = application.settings

    def on_attempt(d: Delivered) -> None:
        lag = (d.delivered_at - d.recorded_at).total_seconds() if d.answer.ok else None
        metrics.record_webhook(str(d.subscription_id), d.answer.outcome, d.answer.seconds, lag)

    relay = WebhookRelay(
        application.webhooks,
        partial(WebhookClaims, application.database.url),
        HttpSender(settings.webhook_timeout_s, settings.webhook_connect_timeout_s),
        RetryPolicy(
            settings.webhook_retry_period_s,
            settings.webhook_retry_initial_s,
            settings.webhook_retry_max_s,
        ),
        NewRows(application.database.url, "outbox"),
        batch_size=settings.webhook_batch_size,
        workers=settings.webhook_workers,
        idle_s=settings.relay_idle_s,
        on_attempt=on_attempt,
        on_failure=lambda name: metrics.loop_failures.labels(name).inc(),
    )
    return Loop("webhook-relay", relay.run)


WEBHOOK_BACKLOG_CAP = 100_000


def _webhook_backlogs(webhooks: WebhookStore) -> dict[str, float]:
    """Each subscription's backlog at scrape time; none while the database cannot say."""
    try:
        return {sid: float(n) for sid, n in webhooks.backlogs(WEBHOOK_BACKLOG_CAP).items()}
    except StoreError:
        return {}


def _relay(
    application: Application,
    metrics: Metrics,
    name: str,
    fetch: Callable[[int], AbstractContextManager[RelayBatch | None]],
    to_message: Callable[[Any], Message],
    topic: str | None,
    table: str,
    label: str,
    shrink: Callable[[Any], Message] | None = None,
) -> Loop:
    """A relay from `table` to `topic`, woken by the table's notifications, counted as `label`."""
    settings = application.settings
    oversize = Oversize(settings.kafka_max_record_bytes, shrink, metrics.oversize.labels(label).inc)
    relay = Relay(
        name,
        fetch,
        to_message,
        producer_factory(settings),
        topic,
        settings.relay_batch_size,
        settings.relay_idle_s,
        settings.delivery_timeout_ms / 1000 + 5,
        NewRows(application.database.url, table),
        oversize,
        metrics.published.labels(label).inc,
    )
    return Loop(name, relay.run)


def _clock(application: Application, metrics: Metrics) -> list[Loop]:
    """The loops that act on time rather than on messages."""
    settings = application.settings
    work = {
        "sweeper": (
            settings.sweep_interval_s,
            sweep_timeouts(application.engine, metrics.record_sweep),
        ),
        "pruner": (
            settings.prune_interval_s,
            prune_retention(
                RetentionStore(application.database),
                timedelta(seconds=settings.outbox_retention_s),
                timedelta(seconds=settings.idempotency_retention_s),
                webhook_log_for=timedelta(seconds=settings.webhook_log_retention_s),
            ),
        ),
        "scheduler": (
            settings.scheduler_interval_s,
            schedule_commands(
                application.commands, timedelta(seconds=settings.accounts_sync_every_s)
            ),
        ),
    }
    return [Loop(name, every(interval_s, job, name)) for name, (interval_s, job) in work.items()]


RELAY_TABLES = {
    "outbox": "status",
    "dead_letters": "dead-letter",
    "commands": "commands",
    "redrives": "redrive",
}
"""Each relayed table and the `relay` label its gauges carry."""


def _watch_backlogs(metrics: Metrics, outbox: OutboxStore) -> None:
    """Backlog gauges read at scrape time; NaN while the database cannot say."""

    def backlog(table: str, index: int) -> float:
        try:
            return float(outbox.backlog(table)[index])
        except StoreError:
            return float("nan")

    for table, label in RELAY_TABLES.items():
        metrics.relay_backlog.labels(label).set_function(lambda t=table: backlog(t, 0))
        metrics.relay_oldest_age.labels(label).set_function(lambda t=table: backlog(t, 1))


def _health(
    application: Application, metrics: Metrics, service: Service, consumer: EventConsumer
) -> Loop:
    """The loop serving /metrics, /healthz (the service runs) and /readyz (it can work)."""
    settings = application.settings

    def ready() -> tuple[bool, dict[str, bool]]:
        checks = {
            "database": database_reachable(application.database),
            "partitions_assigned": bool(consumer.assignment),
            "loops_running": not service.failing,
        }
        return all(checks.values()), checks

    app = health_app(metrics, lambda: not service.stop.is_set(), ready)
    endpoint = HttpEndpoint(
        app, settings.metrics_port, settings.metrics_host, settings.api_request_timeout_s
    )
    return Loop("http", endpoint.run)
