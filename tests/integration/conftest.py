"""What the view and card tests share: an engine and the read queries on a migrated database."""

import pytest

from syncstatus.service.engine import StatusEngine
from syncstatus.statemachine.policy import Policy
from syncstatus.store.queries import ConnectionQueries
from syncstatus.store.uow import PostgresStore


@pytest.fixture
def engine(db_engine) -> StatusEngine:
    return StatusEngine(PostgresStore(db_engine), Policy())


@pytest.fixture
def queries(db_engine) -> ConnectionQueries:
    return ConnectionQueries(db_engine)
