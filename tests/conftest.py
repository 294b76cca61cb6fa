"""One embedded PostgreSQL and one Tansu broker per test session; a fresh database per test.

Every test is marked with its tier, the folder it lives in (`pytest -m unit`, `-m integration`,
...). The servers, and the modules that start them, are imported only when a test asks for
them, so the unit tier starts none and imports neither `syncstatus.devtools` nor the database
drivers; a folder whose tests a `-m` expression cannot select is not even collected.
`-m unit` alone also loads a lighter Hypothesis profile (tests/helpers/examples.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _pytest.mark.expression import Expression

if TYPE_CHECKING:
    import sqlalchemy as sa

    from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e", "browser", "fuzz")
IMPLIED = {"browser": {"integration"}}
"""Tier markers a folder's modules set themselves (tests/browser: `pytestmark = integration`)."""


def _tier(path: Path) -> str | None:
    try:
        top = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return top if top in TIERS else None


def pytest_configure(config: pytest.Config) -> None:
    """`-m unit` alone is the quick loop: property tests try a fifth of their examples
    (tests/helpers/examples.py), unless a Hypothesis profile is named."""
    if config.getoption("markexpr", "").strip() == "unit" and not config.getoption(
        "--hypothesis-profile", None
    ):
        from hypothesis import settings

        from tests.helpers.examples import UNIT_PROFILE

        settings.load_profile(UNIT_PROFILE)


def pytest_report_header(config: pytest.Config) -> str | None:
    from hypothesis import settings

    from tests.helpers.examples import UNIT_PROFILE, UNIT_SHARE

    if settings.get_current_profile_name() == UNIT_PROFILE:
        return f"hypothesis: profile {UNIT_PROFILE!r}, 1/{UNIT_SHARE} of the examples"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item.path)
        if tier is not None:
            item.add_marker(tier)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip a tier's folder when the `-m` expression is false for its tests whatever other
    markers they carry: `-m unit` imports nothing of the other tiers."""
    tier = _tier(collection_path)
    markexpr = config.getoption("markexpr", "")
    if tier is None or not markexpr:
        return None
    try:
        expression = Expression.compile(markexpr)
    except Exception:
        return None  # pytest reports it
    return None if _may_match(expression, {tier, *IMPLIED.get(tier, ())}) else True


def _may_match(
    expression: Expression, tiers: set[str], assigned: dict[str, bool] | None = None
) -> bool:
    """Whether some choice of the non-tier markers in the expression makes it true."""
    assigned = assigned or {}
    free: list[str] = []

    def matcher(name: str, /, **_: object) -> bool:
        if name in TIERS:
            return name in tiers
        if name not in assigned:
            free.append(name)
        return assigned.get(name, False)

    if expression.evaluate(matcher):
        return True
    if not free:
        return False
    if len(assigned) >= 8:
        return True  # too many markers to try them all: collect, pytest deselects
    return any(_may_match(expression, tiers, {**assigned, free[0]: on}) for on in (True, False))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    from syncstatus.devtools.embedded import EmbeddedPostgres

    with EmbeddedPostgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    from syncstatus.devtools.embedded import EmbeddedKafka

    with EmbeddedKafka(log_file=tmp_path_factory.mktemp("kafka") / "tansu.log") as broker:
        yield broker


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> str:
    """An empty database (no migrations) so tests never see each other's rows."""
    return postgres.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def db_engine(database_url: str) -> Iterator[sa.Engine]:
    """A migrated database."""
    from syncstatus.store.database import create_engine, migrate

    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()
