"""Reads the `requirements/*.txt` locks and says where they disagree with `pyproject.toml`.

A lock is what `make lock` writes: `name==version ; marker` lines, each with its hashes and a
`# via` block naming who asked for it (`syncstatus (pyproject.toml)`, another package, or a
`-c` constraint, which only pins and asks for nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROJECT = "syncstatus"
USES = ("runtime", "dev", "test")
"""Each lock and the pyproject extras it resolves; every later one holds the earlier."""

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)")
_VIA_ONE = re.compile(r"^\s+# via (?P<who>.+)$")
_VIA_MANY = re.compile(r"^\s+#\s{3}(?P<who>.+)$")


@dataclass
class Pin:
    version: Version
    hashes: int = 0
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in text.splitlines():
        if match := _PIN.match(line):
            current = Pin(Version(match["version"]))
            pins[canonicalize_name(match["name"])] = current
        elif current is not None and "--hash=sha256:" in line:
            current.hashes += 1
        elif current is not None and (match := _VIA_ONE.match(line) or _VIA_MANY.match(line)):
            current.via.append(match["who"].strip())
    return pins


def declared(pyproject: Mapping[str, Any], use: str) -> list[Requirement]:
    """What `use` asks for directly: the runtime dependencies, or those plus the extras up to
    `use`, with the project's own `syncstatus[...]` references left out."""
    project = pyproject["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in USES[1 : USES.index(use) + 1]:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in requirements if canonicalize_name(r.name) != PROJECT]


def build_requirements(pyproject: Mapping[str, Any]) -> list[Requirement]:
    return [Requirement(r) for r in pyproject["build-system"]["requires"]]


def problems(pyproject: Mapping[str, Any], locks: Mapping[str, str]) -> list[str]:
    """Every disagreement between pyproject.toml and the locks; empty when they agree."""
    parsed = {use: parse_lock(text) for use, text in locks.items()}
    found: list[str] = []
    for use in USES:
        found += _check(use, declared(pyproject, use), parsed[use])
    found += _check("build", build_requirements(pyproject), parsed["build"])
    for earlier, later in zip(USES, USES[1:], strict=False):
        for name, pin in parsed[earlier].items():
            other = parsed[later].get(name)
            if other is None or other.version != pin.version:
                found.append(
                    f"{later}: {name} is {pin.version} in {earlier} but "
                    f"{other.version if other else 'missing'} here"
                )
    return found


def _check(use: str, wanted: Iterable[Requirement], pins: Mapping[str, Pin]) -> list[str]:
    found = []
    wanted = list(wanted)
    for requirement in wanted:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            found.append(f"{use}: {requirement.name} is declared but not locked")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            found.append(f"{use}: {requirement.name}=={pin.version} is outside {requirement}")
    names = set(pins)
    wanted_names = {canonicalize_name(r.name) for r in wanted}
    for name, pin in pins.items():
        if not pin.hashes:
            found.append(f"{use}: {name} has no hashes")
        askers = [who for who in pin.via if not who.startswith("-c ")]
        from_project = any(who.startswith(f"{PROJECT} (pyproject.toml)") for who in askers)
        from_a_pin = any(canonicalize_name(who.split()[0]) in names for who in askers)
        if not (from_project and name in wanted_names) and not from_a_pin and use != "build":
            found.append(f"{use}: {name} is locked but nothing declared needs it")
    return found
