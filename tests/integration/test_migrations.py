"""Alembic migrations and the SQLAlchemy metadata describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncstatus.store.database import alembic_config, migrate
from syncstatus.store.schema import metadata


def test_migrations_match_the_metadata(db_engine):
    with db_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(db_engine):
    migrate(db_engine)
    with db_engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(str(db_engine.url))).get_current_head()
    assert current == head == "0006"
