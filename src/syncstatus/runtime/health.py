"""The HTTP side of the processes: /healthz, /readyz and /metrics served from a loop of
`syncstatus run`, and the uvicorn settings every HTTP server of syncstatus runs with."""

from __future__ import annotations

import threading
from collections.abc import Callable

import h11
import uvicorn
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from syncstatus.runtime.metrics import Metrics


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


GRACEFUL_SHUTDOWN_S = 5
"""How long a stopping server lets responses in flight finish: the change stream
(`GET /changes/stream`) never does, so it is cut then and its client resumes elsewhere."""


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
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
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


def deadline_protocol(request_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline: a connection that has not delivered a whole
    request within `request_timeout_s` of opening, or of its last response, is closed. uvicorn
    times out only idle keep-alive connections, so a client sending its headers a byte at a time
    could hold one open for as long as it liked."""

    class DeadlineProtocol(H11Protocol):
        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            self._arm_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

        def _arm_deadline(self) -> None:
            previous = getattr(self, "_deadline", None)
            if previous is not None:
                previous.cancel()
            self._deadline = self.loop.call_later(request_timeout_s, self._on_deadline)

        def _on_deadline(self) -> None:
            if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                self.transport.close()

    return DeadlineProtocol
