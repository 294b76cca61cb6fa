"""One embedded PostgreSQL and one Tansu broker per test session; a fresh database per test."""

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres
from syncstatus.store.database import create_engine, migrate


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    with EmbeddedKafka(log_file=tmp_path_factory.mktemp("kafka") / "tansu.log") as broker:
        yield broker


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> str:
    """An empty database (no migrations) so tests never see each other's rows."""
    return postgres.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def db_engine(database_url: str) -> Iterator[sa.Engine]:
    """A migrated database."""
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()
