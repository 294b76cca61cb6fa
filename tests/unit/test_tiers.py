"""Every test is marked with its tier (its folder), and `-m unit` runs the unit tier alone:
no other tier collected, no server module imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import pytest

class Items:
    def pytest_collection_finish(self, session):
        self.items = {i.nodeid: sorted(m.name for m in i.iter_markers()) for i in session.items}

items = Items()
code = pytest.main([*sys.argv[1:], "--collect-only", "-q", "-p", "no:cacheprovider"], [items])
heavy = [m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "psycopg", "kafka")]
heavy += [m for m in sys.modules if m.startswith(("syncstatus.devtools", "tests.integration"))]
print("PROBE" + json.dumps({"code": int(code), "items": items.items, "heavy": sorted(heavy)}))
"""


def test_minus_m_unit_collects_the_unit_tier_alone_and_imports_no_server():
    tiers = ["tests/unit/test_lock.py", "tests/integration", "tests/e2e", "tests/browser"]
    quicker = ["-p", "no:schemathesis", "-p", "no:anyio"]  # plugins no unit test here needs
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "-m", "unit", *quicker, *tiers],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("PROBE")), None)
    assert line, result.stdout + result.stderr
    seen = json.loads(line.removeprefix("PROBE"))
    assert seen["code"] == 0
    assert seen["items"], "the unit tests were collected"
    assert {n.split("::")[0] for n in seen["items"]} == {"tests/unit/test_lock.py"}
    assert all("unit" in marks for marks in seen["items"].values())
    assert seen["heavy"] == [], "imported by -m unit"


def test_this_test_is_marked_unit(request: pytest.FixtureRequest):
    assert "unit" in {m.name for m in request.node.iter_markers()}


@pytest.mark.parametrize(
    ("path", "tier"),
    [
        ("tests/unit/test_machine.py", "unit"),
        ("tests/integration", "integration"),
        ("tests/integration/test_engine.py", "integration"),
        ("tests/e2e/test_cli.py", "e2e"),
        ("tests/browser/test_dashboard.py", "browser"),
        ("tests/fuzz/test_decoder_fuzz.py", "fuzz"),
        ("tests/helpers/fake_store.py", None),
        ("tests/conftest.py", None),
        ("src/syncstatus/kafka.py", None),
    ],
)
def test_the_tier_is_the_top_folder(path: str, tier: str | None):
    assert conftest._tier(ROOT / path) == tier


@pytest.mark.parametrize(
    ("markexpr", "collected"),
    [
        ("", {"unit", "integration", "e2e", "browser", "fuzz"}),
        ("unit", {"unit"}),
        ("not unit", {"integration", "e2e", "browser", "fuzz"}),
        ("integration", {"integration", "browser"}),  # tests/browser marks itself integration
        ("unit or e2e", {"unit", "e2e"}),
        ("slow", {"unit", "integration", "e2e", "browser", "fuzz"}),  # any folder may hold one
        ("unit and not slow", {"unit"}),
        ("fuzz and slow", {"fuzz"}),
    ],
)
def test_a_folder_is_collected_only_if_the_expression_can_select_its_tests(
    markexpr: str, collected: set[str]
):
    config = SimpleNamespace(getoption=lambda name, default=None: markexpr)
    kept = {
        tier
        for tier in conftest.TIERS
        if conftest.pytest_ignore_collect(ROOT / "tests" / tier, config) is None
    }
    assert kept == collected
