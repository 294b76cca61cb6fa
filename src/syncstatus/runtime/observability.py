"""Prometheus metrics and the health endpoints of `syncstatus run`.

The loops report through small hooks (`on_batch`, `on_published`, `on_sweep`) so that the
engine and the adapters stay free of metrics code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from syncstatus.api.guard import deadline_protocol
from syncstatus.consumers.event_consumer import BatchReport
from syncstatus.service.engine import BatchResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "syncstatus_events_consumed", "Messages consumed", ["topic", "type"], registry=r
        )
        self.outcomes = Counter(
            "syncstatus_event_outcomes", "What became of each event", ["outcome"], registry=r
        )
        self.transitions = Counter(
            "syncstatus_transitions",
            "Applied transitions",
            ["from_status", "to_status"],
            registry=r,
        )
        self.refusals = Counter(
            "syncstatus_refusals", "Refused events and messages", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "syncstatus_batch_size",
            "Messages per applied batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.apply_seconds = Histogram(
            "syncstatus_apply_seconds", "Time to decide and commit one batch", registry=r
        )
        self.published = Counter(
            "syncstatus_published", "Rows acknowledged by Kafka", ["relay"], registry=r
        )
        self.timeouts = Counter(
            "syncstatus_sweeper_timeouts",
            "Transitions made by the clock",
            ["to_status"],
            registry=r,
        )
        self.relay_backlog = Gauge(
            "syncstatus_relay_backlog",
            "Rows a relay has not had acknowledged yet",
            ["relay"],
            registry=r,
        )
        self.relay_oldest_age = Gauge(
            "syncstatus_relay_oldest_age_seconds",
            "Age of the oldest row a relay has not had acknowledged",
            ["relay"],
            registry=r,
        )
        self.oversize = Counter(
            "syncstatus_records_too_large",
            "Records too large for Kafka: dead letters published without their value, "
            "other records held back",
            ["relay"],
            registry=r,
        )
        self.loop_failures = Counter(
            "syncstatus_loop_failures",
            "Loops that failed and were started again",
            ["loop"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "syncstatus_consumer_assigned_partitions",
            "Input partitions assigned to this process",
            registry=r,
        )

    def record_batch(self, report: BatchReport) -> None:
        self.batch_size.observe(len(report.consumed))
        self.apply_seconds.observe(report.seconds)
        for topic, kind in report.consumed:
            self.consumed.labels(topic, kind).inc()
        for reason in report.rejected:
            self.refusals.labels(reason).inc()
        self.record_result(report.result)

    def record_result(self, result: BatchResult) -> None:
        for outcome in result.outcomes:
            self.outcomes.labels(outcome.value).inc()
        for t in result.transitions:
            source = "new" if t.from_status is None else str(int(t.from_status))
            self.transitions.labels(source, str(int(t.to_status))).inc()
        for r in result.refusals:
            self.refusals.labels(r.reason.value).inc()

    def record_sweep(self, result: BatchResult) -> None:
        self.record_result(result)
        for t in result.transitions:
            self.timeouts.labels(str(int(t.to_status))).inc()


def health_app(
    metrics: Metrics, alive: Callable[[], bool], ready: Callable[[], tuple[bool, dict[str, bool]]]
) -> Starlette:
    """/healthz: the loops run. /readyz: the database answers and partitions are assigned."""

    async def healthz(_: Request) -> JSONResponse:
        ok = alive()
        return JSONResponse({"alive": ok}, status_code=200 if ok else 503)

    async def readyz(_: Request) -> JSONResponse:
        ok, checks = ready()
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Mount("/metrics", make_asgi_app(metrics.registry)),
        ]
    )


def server_config(app, host: str, port: int, request_timeout_s: float) -> uvicorn.Config:  # noqa: ANN001
    """uvicorn with a deadline for each request to arrive whole (see api.guard)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=deadline_protocol(request_timeout_s),
        timeout_keep_alive=5,
    )


class HttpEndpoint:
    """Serves an ASGI app from a loop of the service, stopping with it."""

    def __init__(self, app: Starlette, port: int, host: str, request_timeout_s: float = 10) -> None:
        self._server = uvicorn.Server(server_config(app, host, port, request_timeout_s))
        self._server.install_signal_handlers = lambda: None

    def run(self, stop: threading.Event) -> None:
        thread = threading.Thread(target=self._server.run, daemon=True)
        thread.start()
        stop.wait()
        self._server.should_exit = True
        thread.join(timeout=5)
