"""The Prometheus metrics of `syncstatus run`.

The loops report through small hooks (`on_batch`, `on_published`, `on_sweep`) so that the
engine and the adapters stay free of metrics code.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from syncstatus.service.engine import BatchResult
from syncstatus.service.reports import BatchReport

MAX_PRODUCER_LABELS = 200
UNKNOWN_PRODUCER = "unknown"
OTHER_PRODUCERS = "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter, gauge, histogram = (self._kind(k) for k in (Counter, Gauge, Histogram))
        self.consumed = counter("syncstatus_events_consumed", "Messages consumed", "topic", "type")
        self.outcomes = counter("syncstatus_event_outcomes", "What became of each event", "outcome")
        self.transitions = counter(
            "syncstatus_transitions", "Applied transitions", "from_status", "to_status"
        )
        self.refusals = counter(
            "syncstatus_refusals",
            "Refused events and messages, by producer (unknown: not decoded) and reason",
            "producer",
            "reason",
        )
        self._producers: set[str] = set()
        self.failures = counter(
            "syncstatus_failures", "Transitions caused by a failure, by its class", "app", "class"
        )
        self.batch_size = histogram(
            "syncstatus_batch_size",
            "Messages per applied batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
        )
        self.apply_seconds = histogram(
            "syncstatus_apply_seconds", "Time to decide and commit one batch"
        )
        self.published = counter("syncstatus_published", "Rows acknowledged by Kafka", "relay")
        self.timeouts = counter(
            "syncstatus_sweeper_timeouts", "Transitions made by the clock", "to_status"
        )
        self.relay_backlog = gauge(
            "syncstatus_relay_backlog", "Rows a relay has not had acknowledged yet", "relay"
        )
        self.relay_oldest_age = gauge(
            "syncstatus_relay_oldest_age_seconds",
            "Age of the oldest row a relay has not had acknowledged",
            "relay",
        )
        self.oversize = counter(
            "syncstatus_records_too_large",
            "Records too large for Kafka: dead letters published without their value, "
            "other records held back",
            "relay",
        )
        self.loop_failures = counter(
            "syncstatus_loop_failures", "Loops that failed and were started again", "loop"
        )
        self.assigned_partitions = gauge(
            "syncstatus_consumer_assigned_partitions", "Input partitions assigned to this process"
        )
        self.webhook_deliveries = counter(
            "syncstatus_webhook_deliveries",
            "Webhook delivery attempts, by subscription and outcome (delivered: a 2xx; "
            "rejected: another status; timeout; unreachable)",
            "subscription",
            "outcome",
        )
        self.webhook_delivery_seconds = histogram(
            "syncstatus_webhook_delivery_seconds",
            "One webhook delivery attempt, from sending the request to its answer",
        )
        self.webhook_lag_seconds = histogram(
            "syncstatus_webhook_lag_seconds",
            "From the engine's decision (recorded_at) to the receiver's 2xx",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
        )

    def record_webhook(
        self, subscription: str, outcome: str, seconds: float, lag_s: float | None
    ) -> None:
        self.webhook_deliveries.labels(subscription, outcome).inc()
        self.webhook_delivery_seconds.observe(seconds)
        if lag_s is not None:
            self.webhook_lag_seconds.observe(max(0.0, lag_s))

    def watch_webhook_backlogs(self, read: Callable[[], Mapping[str, float]]) -> None:
        """`syncstatus_webhook_backlog{subscription}`, read at scrape time (subscriptions come
        and go, so the series are made per scrape)."""
        self.registry.register(_Backlogs(read))

    def _kind(self, kind: type) -> Callable[..., Any]:
        """`kind` (Counter, Gauge, Histogram) in this registry, labels as arguments."""

        def make(name: str, documentation: str, *labels: str, **options: Any) -> Any:
            return kind(name, documentation, labels, registry=self.registry, **options)

        return make

    def record_batch(self, report: BatchReport) -> None:
        """Counted per label set first: a batch holds up to a thousand events of a few
        kinds, and each `labels()` call takes the metric's lock."""
        self.batch_size.observe(len(report.consumed))
        self.apply_seconds.observe(report.seconds)
        _add(self.consumed, Tally(report.consumed))
        _add(self.refusals, Tally((self._producer(p), r) for p, r in report.rejected))
        self.record_result(report.result)

    def record_result(self, result: BatchResult) -> None:
        _add(self.outcomes, Tally((o.value,) for o in result.outcomes))
        _add(
            self.transitions,
            Tally(
                ("new" if t.from_status is None else str(int(t.from_status)), str(int(t.to_status)))
                for t in result.transitions
            ),
        )
        _add(
            self.failures,
            Tally(
                (t.app, t.failure_class.value)
                for t in result.transitions
                if t.failure_class is not None
            ),
        )
        _add(
            self.refusals,
            Tally((self._producer(r.event.producer), r.reason.value) for r in result.refusals),
        )

    def _producer(self, producer: str | None) -> str:
        """The producer label: producers name themselves in each event, so past
        MAX_PRODUCER_LABELS distinct names the rest count as `other`, to bound the series."""
        if producer is None:
            return UNKNOWN_PRODUCER
        if producer not in self._producers and len(self._producers) >= MAX_PRODUCER_LABELS:
            return OTHER_PRODUCERS
        self._producers.add(producer)
        return producer

    def record_sweep(self, result: BatchResult) -> None:
        self.record_result(result)
        for t in result.transitions:
            self.timeouts.labels(str(int(t.to_status))).inc()


def _add(metric: Any, counts: Tally[tuple[str, ...]]) -> None:
    for labels, count in counts.items():
        metric.labels(*labels).inc(count)


class _Backlogs(Collector):
    def __init__(self, read: Callable[[], Mapping[str, float]]) -> None:
        self._read = read

    def describe(self) -> list[Any]:
        return []  # read only when scraped: registering must not reach the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "syncstatus_webhook_backlog",
            "Records a webhook subscription has still to deliver (capped)",
            labels=["subscription"],
        )
        for subscription, count in self._read().items():
            family.add_metric([subscription], count)
        yield family
