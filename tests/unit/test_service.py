"""The service's loops: a loop that fails is started again, never the end of the service."""

from __future__ import annotations

import threading

from syncstatus.runtime.process import Loop, Service


class QuickService(Service):
    RESTART_PAUSE_S = 0.01


def test_a_failing_loop_is_counted_and_started_again_until_it_runs():
    attempts, failures, running = [], [], threading.Event()

    def flaky(stop: threading.Event) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("a bad row")
        running.set()
        stop.wait()

    service = QuickService([Loop("flaky", flaky)], on_failure=failures.append)
    thread = threading.Thread(target=lambda: setattr(service, "code", service.run(False)))
    thread.start()
    assert running.wait(5)
    assert failures == ["flaky", "flaky"]
    assert service.failing == ["flaky"]
    service.stop.set()
    thread.join(5)
    assert service.code == 0
