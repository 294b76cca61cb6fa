"""The quick fault campaign, as CI runs it, and proof that it notices a relay that lies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = re.compile(
    r"faults: (?P<n>\d+) injected \((?P<kinds>\d+) kinds\); lost (?P<lost>\d+) on the topic, "
    r"(?P<lost_tables>\d+) in the tables; applied twice (?P<twice>\d+); wrong records "
    r"(?P<wrong>\d+); sequence gaps (?P<gaps>\d+); dead-lettered (?P<k>\d+)/(?P<m>\d+); "
    r"worst recovery (?P<worst>\S+) s$"
)


def campaign(*args: str) -> tuple[subprocess.CompletedProcess, str, re.Match]:
    run = subprocess.run(
        [sys.executable, "-m", "bench.faults", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    figures = FIGURES.search(last)
    assert figures, f"unexpected last line {last!r}\n{output[-8000:]}"
    return run, last, figures


@pytest.mark.timeout(420)
def test_quick_fault_campaign_loses_nothing_and_applies_nothing_twice():
    run, last, figures = campaign("--quick")
    assert run.returncode == 0, run.stdout[-8000:]
    assert not last.startswith("FAILED")
    assert int(figures["n"]) >= 10 and int(figures["kinds"]) >= 6
    for name in ("lost", "lost_tables", "twice", "wrong", "gaps"):
        assert int(figures[name]) == 0, name
    assert int(figures["m"]) > 0 and figures["k"] == figures["m"]


@pytest.mark.timeout(420)
def test_a_relay_that_corrupts_every_seventh_record_fails_the_campaign():
    run, last, figures = campaign(
        "--quick", "--faults", "2", "--connections", "60", "--mutate-relay"
    )
    assert run.returncode == 1
    assert last.startswith("FAILED: ") and "wrong status records" in last
    assert int(figures["wrong"]) > 0
