"""What comes into the use cases: events with the message each came in, and messages refused
before they became events. The origin is kept with every parked or refused event so that a
dead letter can carry the original key and bytes untouched."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from syncstatus.statemachine.events import SessionEvent


@dataclass(frozen=True, slots=True)
class Origin:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone, dead-lettered as one

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _encode(self.key),
            "value": _encode(self.value),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        return cls(
            topic=data["topic"],
            partition=data["partition"],
            offset=data["offset"],
            key=_decode(data["key"]),
            value=_decode(data["value"]),
        )


def _encode(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _decode(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass(frozen=True, slots=True)
class Inbound:
    """An event to apply, with the message it came in (kept for dead letters)."""

    event: SessionEvent
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message refused before it became an event (undecodable, unknown schema, wrong topic)."""

    reason: str
    detail: str
    origin: Origin
    event: SessionEvent | None = None
