"""Coverage-guided fuzzing (atheris, libFuzzer) of what a hostile producer controls: the bytes
of an input message, through the decoder and into the connection aggregate.

    python -m tests.fuzz.decoder [-runs=N] [-max_total_time=S] [CORPUS_DIR ...]

Every input must end in an event within the limits that the aggregate applies, parks or
refuses, or in MessageRejected with a reason; anything else is a crash libFuzzer reports with
the input that caused it. The corpus starts from valid messages of every event type, so
mutations get past the single-object header and fingerprint into the Avro body.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from syncstatus.schemas.messages import EventMessages, MessageRejected
    from syncstatus.statemachine.connection import Connection, Outcome, Policy
    from syncstatus.statemachine.events import Account, EventType, SessionEvent, Substage

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
MESSAGES = EventMessages()
POLICY = Policy(deduplication_apps=frozenset({"plaid"}))


def seeds() -> list[bytes]:
    """One valid message per event type, with every optional field filled."""
    return [
        MESSAGES.encode(
            SessionEvent(
                event_id=uuid.UUID(int=i),
                type=kind,
                connection_id="conn-1",
                session_id="s-1",
                app="plaid" if i % 2 else "facebook_ads",
                occurred_at=NOW - timedelta(seconds=i),
                producer="fuzz",
                error="boom",
                substage=list(Substage)[i % len(Substage)],
                attributes={"business_account": "a@b.example", "credential_id": "c"},
                accounts=(Account("acc-1", "Main", "active"),),
            )
        )
        for i, kind in enumerate(EventType)
    ]


def one_input(data: bytes) -> None:
    try:
        event = MESSAGES.decode(data, NOW)
    except MessageRejected as rejected:
        assert rejected.reason and rejected.detail is not None
        return
    connection = Connection(event.connection_id)
    started = SessionEvent(
        event_id=uuid.uuid4(),
        type=EventType.AUTHORIZATION_STARTED,
        connection_id=event.connection_id,
        session_id=event.session_id,
        app=event.app,
        occurred_at=event.occurred_at - timedelta(seconds=1),
        producer="fuzz",
    )
    for e in (started, event):
        assert connection.accept(e, NOW, POLICY) in Outcome


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="syncstatus-fuzz-"))
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
