"""The atheris harness, run for a bounded number of inputs: no input may crash the decoder or
the aggregate. Longer campaigns: `python -m tests.fuzz.decoder -max_total_time=600`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]


def test_a_quarter_million_mutated_messages_are_each_refused_or_decided():
    run = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.decoder", "-runs=250000", "-seed=20261125"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "#250000\tDONE" in run.stderr, run.stderr[-2000:]
