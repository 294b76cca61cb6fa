"""The layer contracts of pyproject.toml's [tool.importlinter], checked by import-linter: the
domain imports only the standard library and python-statemachine, the use cases no adapter,
the adapters no entry point, and only the CLI the development tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
}


def lint_imports(cwd: Path, config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_are_the_four_layers():
    assert set(CONTRACTS) == {"domain", "service", "adapters", "devtools"}


def test_the_code_keeps_every_layer_contract():
    result = lint_imports(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS.values():
        assert f"{name} KEPT" in result.stdout, result.stdout
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_the_gate_fails_when_a_use_case_imports_the_database_driver(tmp_path: Path):
    """The same check on a copy of the package where service/engine.py imports SQLAlchemy."""
    shutil.copytree(
        ROOT / "src" / "syncstatus",
        tmp_path / "syncstatus",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    with (tmp_path / "syncstatus" / "service" / "engine.py").open("a") as engine:
        engine.write("\nimport sqlalchemy  # noqa: E402,F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    result = lint_imports(tmp_path, tmp_path / "pyproject.toml", PYTHONPATH=str(tmp_path))

    assert result.returncode != 0, result.stdout
    assert f"{CONTRACTS['service']} BROKEN" in result.stdout, result.stdout
    assert "syncstatus.service.engine -> sqlalchemy" in result.stdout, result.stdout
    for contract in ("domain", "adapters", "devtools"):
        assert f"{CONTRACTS[contract]} KEPT" in result.stdout, result.stdout
    assert f"Contracts: {len(CONTRACTS) - 1} kept, 1 broken." in result.stdout
