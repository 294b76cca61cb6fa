"""`syncstatus demo`: publish realistic sessions and print each status change as it arrives.

An ad platform goes from Authorization to Synced with one loading failure and its retry; an
aggregator app goes through Waiting For Webhook; one illegal event lands in the dead letters.
Each event is sent once the previous one's status change came back, so the timeline shows the
service's latency per event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config, family_topics
from syncstatus.producers.publisher import EventPublisher
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.statuses import Status

E = EventType


@dataclass(frozen=True)
class Step:
    connection: str
    event: EventType
    expect: Status | str
    substage: Substage | None = None
    error: str | None = None


def scenario() -> list[Step]:
    ad, bank = "facebook_ads", "plaid"
    steps = [
        Step(ad, E.AUTHORIZATION_STARTED, Status.AUTHORIZATION),
        Step(ad, E.AUTHORIZATION_SUCCEEDED, Status.AUTHORIZED),
        Step(ad, E.LOADING_STARTED, Status.LOADING),
        Step(ad, E.LOADING_FAILED, Status.LOADING_ERROR, error="ads API answered 503"),
        Step(ad, E.LOADING_STARTED, Status.LOADING),
        Step(ad, E.LOADING_COMPLETED, Status.LOADED),
        Step(ad, E.STRUCTURING_STARTED, Status.STRUCTURING),
        Step(ad, E.STRUCTURING_COMPLETED, Status.STRUCTURED),
        Step(ad, E.PROCESSING_STARTED, Status.PROCESSING),
    ]
    steps += [
        Step(ad, E.PROCESSING_SUBSTAGE_COMPLETED, Status.PROCESSING, substage=s) for s in Substage
    ]
    steps += [
        Step(ad, E.PROCESSING_COMPLETED, Status.PROCESSED),
        Step(ad, E.SYNC_COMPLETED, Status.SYNCED),
        Step(ad, E.LOADING_COMPLETED, "illegal_transition"),
        Step(bank, E.AUTHORIZATION_STARTED, Status.AUTHORIZATION),
        Step(bank, E.AUTHORIZATION_SUCCEEDED, Status.AUTHORIZED),
        Step(bank, E.WEBHOOK_PENDING, Status.WAITING_FOR_WEBHOOK),
        Step(bank, E.WEBHOOK_RECEIVED, Status.LOADING),
        Step(bank, E.LOADING_COMPLETED, Status.LOADED),
    ]
    return steps


def run_demo(settings: Settings, say: Callable[[str], None] = print, timeout_s: float = 15) -> bool:
    """Publish the scenario and print the timeline; True if every step came back as expected."""
    run = uuid.uuid4().hex[:6]
    connections = {app: f"{app}-{run}" for app in ("facebook_ads", "plaid")}
    sessions = {app: f"session-{run}-{app}" for app in connections}
    publisher = EventPublisher(client_config(settings), family_topics(settings))
    reader = TopicReader(
        client_config(settings), [settings.topic_status, settings.topic_dead_letter]
    )
    messages = StatusChangeMessages()
    started = time.monotonic()
    say(f"demo {run}: {len(scenario())} events for {', '.join(connections.values())}")
    ok = True
    try:
        for step in scenario():
            sent_at = datetime.now(UTC)
            event = SessionEvent(
                event_id=uuid.uuid4(),
                type=step.event,
                connection_id=connections[step.connection],
                session_id=sessions[step.connection],
                app=step.connection,
                occurred_at=sent_at,
                producer="syncstatus-demo",
                error=step.error,
                substage=step.substage,
            )
            publisher.publish(event)
            publisher.flush()
            line = _await(reader, messages, settings, event, timeout_s)
            elapsed = time.monotonic() - started
            if line is None:
                say(f"{elapsed:7.3f}s  {event.type.value}: no answer within {timeout_s:g} s")
                ok = False
                break
            text, outcome = line
            latency_ms = (datetime.now(UTC) - sent_at).total_seconds() * 1000
            say(f"{elapsed:7.3f}s  {text}  ({latency_ms:.0f} ms)")
            expected = step.expect if isinstance(step.expect, str) else int(step.expect)
            ok = ok and outcome == expected
    finally:
        publisher.close()
        reader.close()
    say("demo passed: every event gave the expected status" if ok else "demo FAILED")
    return ok


def _await(
    reader: TopicReader,
    messages: StatusChangeMessages,
    settings: Settings,
    event: SessionEvent,
    timeout_s: float,
) -> tuple[str, int | str] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in reader.poll(100):
            if record.topic == settings.topic_status:
                change = messages.decode(record.value)
                if change["cause_event_id"] != event.event_id:
                    continue
                source = (
                    "new"
                    if change["from_code"] is None
                    else (f"{change['from_code']} {change['from_name']}")
                )
                substage = f" {change['substage']}" if change["substage"] else ""
                text = (
                    f"{change['connection_id']:<22} #{change['sequence']:<3} "
                    f"{event.type.value:<30} {source:>24} -> "
                    f"{change['to_code']} {change['to_name']:<22} [{change['stage']}]"
                    f"{substage}"
                )
                return text, change["to_code"]
            headers = dict(record.headers or [])
            if headers.get("event_id") == str(event.event_id).encode():
                reason = headers["reason"].decode()
                text = (
                    f"{event.connection_id:<22} dead letter: {reason}: "
                    f"{headers.get('detail', b'').decode()}"
                )
                return text, reason
    return None
