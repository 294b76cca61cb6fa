"""Engine creation and migrations."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from syncstatus.store.errors import DATABASE

MIGRATIONS = Path(__file__).with_name("migrations")


SESSION_OPTIONS = "-c timezone=UTC"
"""Every session reads and writes timestamps in UTC: in a zone west of UTC, PostgreSQL renders
the earliest timestamps as years BC, which no Python datetime can hold."""


def create_engine(url: str, pool_size: int = 5) -> sa.Engine:
    """An engine that checks connections before use, so a database restart costs one retry."""
    return sa.create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args={"options": SESSION_OPTIONS},
    )


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the schema; a lock keeps two instances starting together from racing."""
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def database_reachable(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except DATABASE:
        return False
