"""The Kafka messages of syncstatus: input events and status changes, to and from Avro.

Shared by the consumers, the producers and the helper other services publish with, so that
every side encodes exactly the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncstatus.schemas.codec import (
    CONNECTION_COMMAND,
    SESSION_EVENT,
    STATUS_CHANGED,
    SingleObjectCodec,
    UndecodableMessage,
    UnknownSchema,
    earlier_versions,
)
from syncstatus.statemachine.commands import IssuedCommand
from syncstatus.statemachine.connection import RefusalReason, Transition
from syncstatus.statemachine.events import InvalidEvent, SessionEvent

UNKNOWN = "UNKNOWN"


class MessageRejected(Exception):
    """A message that cannot become an event; `reason` is the dead-letter reason."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


DEFAULT_ID_PATTERN = r"(?!\.\.?$)[^\x00-\x1f\x7f/\\]+"
"""Connection, session, app and producer ids: no control characters, no slash or backslash,
not `.` or `..`, so every id the consumer takes is one URL path segment the API can serve."""


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What a well-formed input message may hold; anything beyond is refused as invalid
    before it reaches the engine, so no producer can poison a partition or a connection."""

    max_message_bytes: int = 1_048_576
    max_id_length: int = 256
    id_pattern: re.Pattern[str] = re.compile(DEFAULT_ID_PATTERN)
    max_text_length: int = 4096
    max_attributes: int = 64
    max_accounts: int = 10_000
    max_clock_skew: timedelta = timedelta(hours=1)
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)

    def check(self, event: SessionEvent, now: datetime) -> None:
        """Raise MessageRejected(INVALID_EVENT) for an event beyond the limits."""
        for name in ("connection_id", "session_id", "app", "producer"):
            self._text(name, getattr(event, name), self.max_id_length)
            if not self.id_pattern.fullmatch(getattr(event, name)):
                self._refuse(f"{name} {getattr(event, name)[:80]!r} does not match the id rule")
        self._text("error", event.error or "", self.max_text_length)
        if len(event.attributes) > self.max_attributes:
            self._refuse(f"{len(event.attributes)} attributes; at most {self.max_attributes}")
        for key, value in event.attributes.items():
            self._text("attribute name", key, self.max_id_length)
            self._text(f"attribute {key[:40]!r}", value, self.max_text_length)
        if event.accounts is not None and len(event.accounts) > self.max_accounts:
            self._refuse(f"{len(event.accounts)} accounts; at most {self.max_accounts}")
        for account in event.accounts or ():
            self._text("account id", account.account_id, self.max_id_length)
            self._text("account name", account.name, self.max_text_length)
            self._text("account status", account.status, self.max_id_length)
        if event.occurred_at - now > self.max_clock_skew:
            self._refuse(f"occurred_at {event.occurred_at.isoformat()} is in the future")
        if event.occurred_at < self.earliest:
            self._refuse(
                f"occurred_at {event.occurred_at.isoformat()} is before "
                f"{self.earliest.isoformat()}: a zero or default timestamp"
            )

    def _text(self, name: str, value: str, limit: int) -> None:
        if len(value) > limit:
            self._refuse(f"{name} is {len(value)} characters long; at most {limit}")
        if "\x00" in value:
            self._refuse(f"{name} contains a NUL character")

    @staticmethod
    def _refuse(detail: str) -> None:
        raise MessageRejected(RefusalReason.INVALID_EVENT, detail)


class EventMessages:
    """SessionEvent <-> Avro single-object bytes."""

    def __init__(self, limits: EventLimits | None = None) -> None:
        self.limits = limits or EventLimits()
        self.codec = SingleObjectCodec(
            SESSION_EVENT, writer_schemas=earlier_versions(SESSION_EVENT)
        )

    def encode(self, event: SessionEvent) -> bytes:
        return self.codec.encode(event.to_record())

    def decode(self, value: bytes | None, now: datetime | None = None) -> SessionEvent:
        """The event in `value`, or MessageRejected saying why it can never be one."""
        if value is None:
            raise MessageRejected(RefusalReason.UNDECODABLE, "the message has no value")
        if len(value) > self.limits.max_message_bytes:
            raise MessageRejected(
                RefusalReason.UNDECODABLE,
                f"{len(value)} bytes; at most {self.limits.max_message_bytes}",
            )
        try:
            record = self.codec.decode(value)
        except UnknownSchema as error:
            raise MessageRejected(RefusalReason.UNKNOWN_SCHEMA, str(error)) from error
        except UndecodableMessage as error:
            raise MessageRejected(RefusalReason.UNDECODABLE, str(error)) from error
        if record["type"] == UNKNOWN:
            raise MessageRejected(RefusalReason.INVALID_EVENT, "unknown event type")
        if record["substage"] == UNKNOWN:
            raise MessageRejected(RefusalReason.INVALID_EVENT, "unknown substage")
        try:
            event = SessionEvent.from_record(record)
        except (InvalidEvent, ValueError) as error:
            raise MessageRejected(RefusalReason.INVALID_EVENT, str(error)) from error
        self.limits.check(event, now or datetime.now(UTC))
        return event


class StatusChangeMessages:
    """Transition -> the StatusChanged record on the status topic, and back for readers."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(
            STATUS_CHANGED, writer_schemas=earlier_versions(STATUS_CHANGED)
        )

    def encode(self, t: Transition) -> bytes:
        return self.codec.encode(
            {
                "connection_id": t.connection_id,
                "session_id": t.session_id,
                "app": t.app,
                "sequence": t.sequence,
                "from_code": None if t.from_status is None else int(t.from_status),
                "from_name": None if t.from_status is None else t.from_status.label,
                "to_code": int(t.to_status),
                "to_name": t.to_status.label,
                "stage": t.to_status.stage.label,
                "is_error": t.to_status.is_error,
                "substage": t.substage.value if t.substage else None,
                "cause_event_id": t.event_id,
                "cause_event_type": t.event_type.value,
                "error": t.error,
                "occurred_at": t.occurred_at,
                "recorded_at": t.recorded_at,
            }
        )

    def decode(self, value: bytes) -> dict[str, Any]:
        return self.codec.decode(value)


class CommandMessages:
    """IssuedCommand -> the ConnectionCommand record on the commands topic, and back."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(
            CONNECTION_COMMAND, writer_schemas=earlier_versions(CONNECTION_COMMAND)
        )

    def encode(self, command: IssuedCommand) -> bytes:
        return self.codec.encode(
            {
                "command_id": command.command_id,
                "type": command.command.value,
                "connection_id": command.connection_id,
                "app": command.app,
                "requested_by": command.requested_by,
                "requested_at": command.requested_at,
                "parameters": dict(command.parameters),
            }
        )

    def decode(self, value: bytes) -> dict[str, Any]:
        return self.codec.decode(value)
