"""The Kafka messages of syncstatus: input events and status changes, to and from Avro.

Shared by the consumers, the producers and the helper other services publish with, so that
every side encodes exactly the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
from syncstatus.statemachine.events import EventLimits, InvalidEvent, SessionEvent

UNKNOWN = "UNKNOWN"


class MessageRejected(Exception):
    """A message that cannot become an event; `reason` is the dead-letter reason."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


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
            self.limits.check(event, now or datetime.now(UTC))
        except (InvalidEvent, ValueError) as error:
            raise MessageRejected(RefusalReason.INVALID_EVENT, str(error)) from error
        return event


class StatusChangeMessages:
    """Transition -> the StatusChanged record on the status topic, and back for readers."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(
            STATUS_CHANGED, writer_schemas=earlier_versions(STATUS_CHANGED)
        )

    def encode(self, t: Transition) -> bytes:
        return self.codec.encode(self.record(t))

    @staticmethod
    def record(t: Transition) -> dict[str, Any]:
        """The StatusChanged record of a transition: what the status topic carries, and, as
        JSON, what webhooks, the catch-up routes and the change stream serve."""
        return {
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
            "failure_class": t.failure_class.value if t.failure_class else None,
            "failure_retryable": t.failure.retryable if t.failure else None,
            "failure_code": t.failure.code if t.failure else None,
            "workspace_id": t.workspace_id,
        }

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
                "workspace_id": command.workspace_id,
            }
        )

    def decode(self, value: bytes) -> dict[str, Any]:
        return self.codec.decode(value)
