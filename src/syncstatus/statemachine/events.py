"""The input event every producer sends, and the rules an event must meet before it is decided."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cached_property
from typing import Any


class EventFamily(Enum):
    """Which kind of producer owns an event type; each family has its own input topic."""

    AUTHORIZATION = "authorization"
    WEBHOOK = "webhook"
    PIPELINE = "pipeline"
    SERVICE = "service"


class EventType(Enum):
    AUTHORIZATION_STARTED = "AUTHORIZATION_STARTED"
    AUTHORIZATION_SUCCEEDED = "AUTHORIZATION_SUCCEEDED"
    AUTHORIZATION_FAILED = "AUTHORIZATION_FAILED"
    AUTHORIZATION_TIMED_OUT = "AUTHORIZATION_TIMED_OUT"
    DEAUTHORIZED = "DEAUTHORIZED"
    DISCONNECTED = "DISCONNECTED"
    WEBHOOK_PENDING = "WEBHOOK_PENDING"
    WEBHOOK_RECEIVED = "WEBHOOK_RECEIVED"
    WEBHOOK_FAILED = "WEBHOOK_FAILED"
    LOADING_STARTED = "LOADING_STARTED"
    LOADING_COMPLETED = "LOADING_COMPLETED"
    LOADING_FAILED = "LOADING_FAILED"
    DEDUPLICATION_STARTED = "DEDUPLICATION_STARTED"
    DEDUPLICATION_FAILED = "DEDUPLICATION_FAILED"
    STRUCTURING_STARTED = "STRUCTURING_STARTED"
    STRUCTURING_COMPLETED = "STRUCTURING_COMPLETED"
    STRUCTURING_FAILED = "STRUCTURING_FAILED"
    PROCESSING_STARTED = "PROCESSING_STARTED"
    PROCESSING_SUBSTAGE_COMPLETED = "PROCESSING_SUBSTAGE_COMPLETED"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    PROCESSING_COMPLETED = "PROCESSING_COMPLETED"
    SYNC_COMPLETED = "SYNC_COMPLETED"
    STAGE_TIMED_OUT = "STAGE_TIMED_OUT"
    ACCOUNTS_SYNC_STARTED = "ACCOUNTS_SYNC_STARTED"
    ACCOUNTS_SYNCED = "ACCOUNTS_SYNCED"
    ACCOUNTS_SYNC_FAILED = "ACCOUNTS_SYNC_FAILED"
    CONNECTION_DELETED = "CONNECTION_DELETED"

    @cached_property
    def family(self) -> EventFamily:
        """The family whose topic may carry this type.

        WEBHOOK_PENDING is decided by the pipeline (it knows the app is an aggregator), so it
        travels with the pipeline events; STAGE_TIMED_OUT and CONNECTION_DELETED are written
        only by syncstatus itself (its sweeper, a Delete command), so no input topic may carry
        them.
        """
        if self in (EventType.STAGE_TIMED_OUT, EventType.CONNECTION_DELETED):
            return EventFamily.SERVICE
        if self.name.startswith(("AUTHORIZATION_", "DEAUTHORIZED", "DISCONNECTED", "ACCOUNTS_")):
            return EventFamily.AUTHORIZATION
        if self.name.startswith("WEBHOOK_") and self is not EventType.WEBHOOK_PENDING:
            return EventFamily.WEBHOOK
        return EventFamily.PIPELINE

    @cached_property
    def changes_status(self) -> bool:
        """Account events feed the connections view and its history, never the status."""
        return not self.name.startswith("ACCOUNTS_")

    @property
    def connection_wide(self) -> bool:
        """About the connection's credentials or accounts rather than one session's data.

        The producer knows no sync session for them (an app revoked access, an account list
        was read), so they apply to whichever session is current, unless they happened
        before it opened.
        """
        return self in _CONNECTION_WIDE

    @property
    def trigger(self) -> str:
        """The event's name in the state machine declaration."""
        return self.value.lower()


_CONNECTION_WIDE = frozenset(
    {
        EventType.DEAUTHORIZED,
        EventType.DISCONNECTED,
        EventType.ACCOUNTS_SYNC_STARTED,
        EventType.ACCOUNTS_SYNCED,
        EventType.ACCOUNTS_SYNC_FAILED,
    }
)


class Substage(Enum):
    """The five substages of the processing stage, in the order the documents list them."""

    MONITORING = "MONITORING"
    FORECASTING = "FORECASTING"
    INSIGHTS = "INSIGHTS"
    BENCHMARKING = "BENCHMARKING"
    HISTORICAL_DATA_CLEANING = "HISTORICAL_DATA_CLEANING"


ALL_SUBSTAGES = frozenset(Substage)


@dataclass(frozen=True, slots=True)
class Account:
    """One account reachable through a connection's credentials (an ad account, a bank
    account)."""

    account_id: str
    name: str
    status: str


class FailureClass(Enum):
    """Why something failed, as its producer classifies it: what to do next depends on it
    (re-connect for credentials, wait for a rate limit, fix configuration for permission)."""

    CREDENTIALS = "credentials"
    PERMISSION = "permission"
    RATE_LIMIT = "rate_limit"
    SOURCE_UNAVAILABLE = "source_unavailable"
    DATA = "data"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Failure:
    failure_class: FailureClass
    retryable: bool
    code: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"class": self.failure_class.name, "retryable": self.retryable, "code": self.code}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Failure:
        return cls(FailureClass[record["class"]], record["retryable"], record.get("code"))


def failure_class_of(failure: Failure | None, error: str | None) -> FailureClass | None:
    """The class a failure reads as: the producer's, or UNKNOWN when it sent error text alone;
    None when there is no failure at all."""
    if failure is not None:
        return failure.failure_class
    return FailureClass.UNKNOWN if error else None


class InvalidEvent(ValueError):
    """An event that can never be decided, whatever the connection's status."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One fact reported by a producer about one session of one connection.

    `event_id` is the idempotency key: the same id is applied at most once.
    """

    event_id: uuid.UUID
    type: EventType
    connection_id: str
    session_id: str
    app: str
    occurred_at: datetime
    producer: str
    error: str | None = None
    substage: Substage | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    accounts: tuple[Account, ...] | None = None
    failure: Failure | None = None
    workspace_id: str | None = None
    """The workspace the producer says the connection belongs to (v5); None: it did not say,
    and the event is taken as the connection's own (statemachine/workspaces.py)."""

    def __post_init__(self) -> None:
        for name in ("connection_id", "session_id", "app", "producer"):
            if not getattr(self, name):
                raise InvalidEvent(f"{name} is empty")
        if self.workspace_id is not None and not self.workspace_id:
            raise InvalidEvent("workspace_id is empty")
        if self.occurred_at.tzinfo is None:
            raise InvalidEvent("occurred_at has no time zone")
        if self.type is EventType.PROCESSING_SUBSTAGE_COMPLETED and self.substage is None:
            raise InvalidEvent("PROCESSING_SUBSTAGE_COMPLETED names no substage")
        if self.type is EventType.ACCOUNTS_SYNCED and self.accounts is None:
            raise InvalidEvent("ACCOUNTS_SYNCED carries no accounts list")

    @property
    def failure_class(self) -> FailureClass | None:
        return failure_class_of(self.failure, self.error)

    def to_record(self) -> dict[str, Any]:
        """The event as plain values, enums by their value: what the Avro schema holds and
        what the store keeps of a parked or refused event."""
        return {
            "event_id": self.event_id,
            "type": self.type.value,
            "connection_id": self.connection_id,
            "session_id": self.session_id,
            "app": self.app,
            "occurred_at": self.occurred_at,
            "producer": self.producer,
            "error": self.error,
            "substage": self.substage.value if self.substage else None,
            "attributes": dict(self.attributes),
            "accounts": None
            if self.accounts is None
            else [
                {"account_id": a.account_id, "name": a.name, "status": a.status}
                for a in self.accounts
            ],
            "failure": None if self.failure is None else self.failure.to_record(),
            "workspace_id": self.workspace_id,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SessionEvent:
        """The inverse of `to_record`; ids and times may come as text (stored JSON), and
        accounts as `[id, name, status]` lists (rows stored before 0.2); a record without
        `workspace_id` (stored or written before v5) names no workspace."""
        accounts, failure = record.get("accounts"), record.get("failure")
        return cls(
            event_id=_as_uuid(record["event_id"]),
            type=EventType(record["type"]),
            connection_id=record["connection_id"],
            session_id=record["session_id"],
            app=record["app"],
            occurred_at=_as_datetime(record["occurred_at"]),
            producer=record["producer"],
            error=record["error"],
            substage=Substage(record["substage"]) if record["substage"] else None,
            attributes=record["attributes"],
            accounts=None if accounts is None else tuple(_as_account(a) for a in accounts),
            failure=None if failure is None else Failure.from_record(failure),
            workspace_id=record.get("workspace_id"),
        )


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _as_account(value: Mapping[str, str] | Sequence[str]) -> Account:
    return Account(**value) if isinstance(value, Mapping) else Account(*value)


_ID_FIELDS = ("connection_id", "session_id", "app", "producer", "workspace_id")
"""The fields an id rule holds for; only workspace_id may be None (the producer did not say)."""
DEFAULT_ID_PATTERN = r"(?!\.\.?$)[^\x00-\x1f\x7f/\\]+"
"""Connection, session, app, producer and workspace ids: no control characters, no slash or
backslash, not `.` or `..`, so every id the consumer takes is one URL path segment the API can
serve."""


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What a well-formed input event may hold; anything beyond is refused as invalid
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
        """Raise InvalidEvent for an event beyond the limits."""
        for name in _ID_FIELDS:
            value = getattr(event, name)
            if value is None:
                continue
            self._text(name, value, self.max_id_length)
            if not self.id_pattern.fullmatch(value):
                self._refuse(f"{name} {value[:80]!r} does not match the id rule")
        self._text("error", event.error or "", self.max_text_length)
        if event.failure is not None:
            self._text("failure code", event.failure.code or "", self.max_id_length)
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
        raise InvalidEvent(detail)
