"""The quick fault campaign, as CI runs it: crashes, a database outage, a frozen broker and a
second instance mid-stream, and nothing lost, applied twice or skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"^faults: (?P<n>\d+) injected; lost (?P<lost>\d+); applied twice (?P<twice>\d+); "
    r"sequence gaps (?P<gaps>\d+); dead-lettered (?P<k>\d+)/(?P<m>\d+); "
    r"worst recovery (?P<worst>\d+\.\d) s$"
)


@pytest.mark.e2e
@pytest.mark.timeout(360)
def test_quick_fault_campaign_loses_nothing_and_applies_nothing_twice():
    run = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    lines = run.stdout.strip().splitlines()
    assert lines, output[-8000:]
    match = LAST_LINE.match(lines[-1])
    assert match, f"unexpected last line {lines[-1]!r}\n{output[-8000:]}"
    assert int(match["n"]) >= 4
    assert int(match["lost"]) == 0
    assert int(match["twice"]) == 0
    assert int(match["gaps"]) == 0
    assert int(match["m"]) > 0
    assert match["k"] == match["m"]
