"""The collector settings `syncstatus run` makes once started, checked in a fresh interpreter
so that this test process keeps its own."""

import subprocess
import sys

from syncstatus.runtime.heap import YOUNGEST_THRESHOLD

PROBE = (
    "import gc; from syncstatus.runtime.heap import settle_after_start; "
    "before = gc.get_threshold(); settle_after_start(); "
    "print(before[0], gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:], "
    "gc.get_freeze_count() > 0)"
)


def test_start_up_objects_are_frozen_and_the_youngest_generation_waits_longer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["700", str(YOUNGEST_THRESHOLD), "True", "True"]
