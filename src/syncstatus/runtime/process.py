"""Runs the service's loops side by side until told to stop."""

from __future__ import annotations

import signal
import threading
import time
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
    relays finish their round, and `run` returns 0. A loop that fails is logged, counted and
    started again after a pause that doubles up to a minute, so one bad row or one odd error
    of a dependency never stops the whole service; `failing` names the loops that failed in
    the last minute, for /readyz.
    """

    RESTART_PAUSE_S = 1.0
    MAX_PAUSE_S = 60.0

    def __init__(
        self, loops: list[Loop], on_failure: Callable[[str], None] = lambda _: None
    ) -> None:
        self.loops = loops
        self.stop = threading.Event()
        self._on_failure = on_failure
        self._failed_at: dict[str, float] = {}

    @property
    def failing(self) -> list[str]:
        recent = time.monotonic() - self.MAX_PAUSE_S
        return sorted(name for name, at in self._failed_at.items() if at > recent)

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
        log.info("service stopped")
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def _guard(self, loop: Loop) -> None:
        pause = self.RESTART_PAUSE_S
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                loop.run(self.stop)
                return
            except Exception as error:
                self._failed_at[loop.name] = time.monotonic()
                self._on_failure(loop.name)
                if time.monotonic() - started > self.MAX_PAUSE_S:
                    pause = self.RESTART_PAUSE_S
                log.exception(
                    "loop failed; starting it again",
                    loop=loop.name,
                    error_type=f"{type(error).__module__}.{type(error).__qualname__}",
                    pause_s=pause,
                )
            self.stop.wait(pause)
            pause = min(pause * 2, self.MAX_PAUSE_S)
