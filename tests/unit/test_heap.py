"""The collector settings `syncstatus run` makes once started, checked in a fresh interpreter
so that this test process keeps its own."""

import subprocess
import sys

from syncstatus.runtime.heap import youngest_threshold

PROBE = (
    "import gc; from syncstatus.runtime.heap import settle_after_start; "
    "before = gc.get_threshold(); settle_after_start(1000); "
    "print(before[0], gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:], "
    "gc.get_freeze_count() > 0)"
)


def test_start_up_objects_are_frozen_and_the_youngest_generation_waits_longer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["700", "50000", "True", "True"]


def test_the_youngest_generation_grows_with_the_batch_and_never_below_the_default() -> None:
    assert [youngest_threshold(n) for n in (1, 14, 1000, 4000)] == [700, 700, 50_000, 200_000]
