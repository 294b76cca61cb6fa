"""The locks in requirements/ are what pyproject.toml declares, resolved, with hashes."""

import copy
import re
import tomllib
from pathlib import Path

import pytest

from tests.helpers.lockfile import USES, parse_lock, problems

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {use: (ROOT / "requirements" / f"{use}.txt").read_text() for use in (*USES, "build")}


def test_the_locks_agree_with_pyproject() -> None:
    assert problems(PYPROJECT, LOCKS) == []


def test_every_lock_pins_exact_versions_with_hashes() -> None:
    for use, text in LOCKS.items():
        pins = parse_lock(text)
        assert pins, use
        assert all(pin.hashes for pin in pins.values()), use


def _declare(extra: str | None, requirement: str) -> dict:
    changed = copy.deepcopy(PYPROJECT)
    target = (
        changed["project"]["dependencies"]
        if extra is None
        else changed["project"]["optional-dependencies"][extra]
    )
    target.append(requirement)
    return changed


@pytest.mark.parametrize(
    ("pyproject", "expected"),
    [
        (_declare(None, "left-pad>=1"), "runtime: left-pad is declared but not locked"),
        (_declare("test", "pytest>=99"), "test: pytest==9.1.1 is outside pytest>=99"),
    ],
    ids=["declared-not-locked", "pin-outside-range"],
)
def test_the_gate_fails_when_pyproject_changes_without_the_lock(pyproject, expected) -> None:
    assert expected in problems(pyproject, LOCKS)


def test_the_gate_fails_when_the_lock_keeps_a_package_nothing_declares() -> None:
    changed = copy.deepcopy(PYPROJECT)
    changed["project"]["optional-dependencies"]["test"].remove("ruff>=0.6")
    assert "test: ruff is locked but nothing declared needs it" in problems(changed, LOCKS)


def test_the_gate_fails_when_two_locks_pin_different_versions() -> None:
    older = re.sub(r"\nfastavro==[^ ]+", "\nfastavro==1.9.0", LOCKS["test"], count=1)
    locks = dict(LOCKS, test=older)
    assert any("fastavro" in p and "in dev but" in p for p in problems(PYPROJECT, locks))
