"""A webhook receiver on loopback for the tests and the benchmark: a real HTTP/1.1 server
(keep-alive, a thread per connection) that records every request it gets and answers as its
`behaviour` says: a status code, after an optional delay (longer than the sender's timeout:
a timeout, though the receiver did get the request)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when the whole request had arrived."""
    status: int
    """What the receiver answered (or was about to, when the sender had given up)."""
    late: bool = False
    """It answered after a delay (the sender had likely given up: a timeout)."""

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def change(self) -> dict[str, Any]:
        return self.payload["data"]

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]


Behaviour = Callable[[str, int], tuple[int, float]]
"""(path, how many requests this path had before) -> (status, seconds to wait first)."""


def always(status: int = 200) -> Behaviour:
    return lambda _path, _n: (status, 0.0)


class Receiver:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or always(200)
        self.received: list[Received] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    n = receiver._counts.get(self.path, 0)
                    receiver._counts[self.path] = n + 1
                status, delay = receiver.behaviour(self.path, n)
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            status,
                            delay > 0,
                        )
                    )
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def accepted(self, path: str) -> list[Received]:
        """The requests it answered with a 2xx in time, in arrival order."""
        return [r for r in self.at(path) if 200 <= r.status < 300 and not r.late]

    def wait_for(
        self, condition: Callable[[Receiver], bool], timeout_s: float = 20, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s} s: {what}")
            time.sleep(0.02)


@contextmanager
def receiving(behaviour: Behaviour | None = None) -> Iterator[Receiver]:
    receiver = Receiver(behaviour).start()
    try:
        yield receiver
    finally:
        receiver.stop()
