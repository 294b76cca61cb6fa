"""Commands reach the commands topic as Avro: from a person, and from the scheduler."""

from __future__ import annotations

import time

from syncstatus.bootstrap import build
from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config
from syncstatus.schemas.messages import CommandMessages
from syncstatus.statemachine.commands import CommandType
from syncstatus.statemachine.events import Account, EventType
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE as ALL
from tests.helpers.factories import event

from .support import running_service, settings_for

E = EventType


def test_issued_and_scheduled_commands_are_published(kafka, db_engine, database_url):
    settings = settings_for(kafka, database_url, scheduler_interval_s=0.3)
    application = build(settings)
    engine = application.engine
    engine.apply_event(event(E.AUTHORIZATION_STARTED, "c1"))
    engine.apply_event(event(E.AUTHORIZATION_SUCCEEDED, "c1"))
    issued = application.commands.issue("c1", CommandType.RECONNECT, "alice", scope=ALL)
    messages = CommandMessages()
    seen: list[dict] = []
    with running_service(settings):
        reader = TopicReader(
            client_config(settings), [settings.topic_commands], from_beginning=True
        )
        engine.apply_event(event(E.ACCOUNTS_SYNCED, "c1", accounts=(Account("a", "A", "active"),)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {c["type"] for c in seen} != {
            "RECONNECT",
            "SYNC_ACCOUNTS",
            "SYNC_AND_REFRESH",
        }:
            seen += [messages.decode(r.value) for r in reader.poll(200)]
        reader.close()
    application.close()
    by_type = {c["type"]: c for c in seen}
    assert by_type["RECONNECT"]["command_id"] == issued.command_id
    assert by_type["RECONNECT"]["requested_by"] == "alice"
    assert by_type["SYNC_AND_REFRESH"]["requested_by"] == "scheduler"
    assert by_type["SYNC_ACCOUNTS"]["connection_id"] == "c1"
    assert len(seen) == 3, seen
