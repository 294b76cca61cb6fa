"""The one place that builds the object graph from settings; entry points only call it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from syncstatus.engine import StatusEngine
from syncstatus.settings import Settings
from syncstatus.store.database import create_engine
from syncstatus.store.postgres import PostgresStore
from syncstatus.store.queries import StatusQueries


@dataclass
class Application:
    settings: Settings
    database: sa.Engine
    engine: StatusEngine
    queries: StatusQueries

    def close(self) -> None:
        self.database.dispose()


def build(settings: Settings) -> Application:
    database = create_engine(settings.database_url)
    return Application(
        settings=settings,
        database=database,
        engine=StatusEngine(PostgresStore(database), settings.policy()),
        queries=StatusQueries(database),
    )
