"""Runs the service's loops side by side until told to stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Loop:
    name: str
    run: Callable[[threading.Event], None]


class Service:
    """Each loop gets its own thread and the shared stop flag.

    SIGTERM or SIGINT sets the flag: the consumer finishes and commits the batch in hand, the
    relays finish their round, and `run` returns 0. A loop that dies of an unexpected error
    stops the others and `run` returns 1, so a supervisor restarts the process.
    """

    def __init__(self, loops: list[Loop]) -> None:
        self.loops = loops
        self.stop = threading.Event()
        self._failed = threading.Event()

    def run(self, handle_signals: bool = True) -> int:
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        threads = [
            threading.Thread(target=self._guard, args=(loop,), name=loop.name, daemon=True)
            for loop in self.loops
        ]
        for thread in threads:
            thread.start()
        log.info("service started", loops=[loop.name for loop in self.loops])
        while not self.stop.wait(0.2):
            pass
        for thread in threads:
            thread.join()
        log.info("service stopped", failed=self._failed.is_set())
        return 1 if self._failed.is_set() else 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def _guard(self, loop: Loop) -> None:
        try:
            loop.run(self.stop)
        except Exception:
            log.exception("loop failed", loop=loop.name)
            self._failed.set()
            self.stop.set()
