"""What comes into the use cases: events with the message each came in, and messages refused
before they became events. The origin is kept with every parked or refused event so that a
dead letter can carry the original key, bytes and headers untouched.

A dead letter redriven is published again as the message it came in, with a header naming
the dead letter (`REDRIVE_HEADER`). The engine claims every event id it takes, refused ones
included, so the same bytes under the same claim would only be a duplicate: a redriven message
is claimed under a key derived from the dead letter's id instead (`redrive_claim`), provided the
store vouches for it (see `StatusEngine`). Each dead letter's redrive is then applied at most
once however often it is published, while a fresh refusal of it makes a new dead letter, with
its own id, that can be redriven in turn.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, replace
from typing import Any

from syncstatus.statemachine.events import SessionEvent

REDRIVE_HEADER = "syncstatus-redrive-of"
"""The id of the dead letter a message redrives (decimal, ASCII)."""
REDRIVEN_BY_HEADER = "syncstatus-redriven-by"
"""Who asked for the redrive: for the people reading the topic, never for a decision."""
_REDRIVE_NAMESPACE = uuid.UUID("3b7e4f52-9c1d-4e8a-b6f0-5d2a71c9e804")

Headers = tuple[tuple[str, bytes], ...]


def redrive_claim(dead_letter_id: int) -> uuid.UUID:
    """The idempotency key of a dead letter's redrive: one per dead letter, never an event's."""
    return uuid.uuid5(_REDRIVE_NAMESPACE, f"dead-letter/{dead_letter_id}")


@dataclass(frozen=True, slots=True)
class Origin:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone, dead-lettered as one
    headers: Headers = ()

    @property
    def redrive_of(self) -> int | None:
        """The dead letter this message redrives (the last such header), if it names one."""
        named = [value for name, value in self.headers if name == REDRIVE_HEADER]
        if not named or not named[-1].isdigit():
            return None
        return int(named[-1])

    def redriven(self, dead_letter_id: int, by: str) -> Origin:
        """The message a redrive of this one's dead letter publishes: the same topic, key and
        value, its headers but those of an earlier redrive, and two naming this one. Partition
        and offset are the broker's to give; they stay those of the original until then."""
        kept = tuple((n, v) for n, v in self.headers if n not in _REDRIVE_HEADERS)
        return replace(
            self,
            headers=kept
            + ((REDRIVE_HEADER, str(dead_letter_id).encode()), (REDRIVEN_BY_HEADER, by.encode())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _encode(self.key),
            "value": _encode(self.value),
            "headers": [[name, _encode(value)] for name, value in self.headers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        """Origins stored before headers were kept have none."""
        return cls(
            topic=data["topic"],
            partition=data["partition"],
            offset=data["offset"],
            key=_decode(data["key"]),
            value=_decode(data["value"]),
            headers=tuple((name, _decode(value) or b"") for name, value in data.get("headers", ())),
        )


_REDRIVE_HEADERS = frozenset({REDRIVE_HEADER, REDRIVEN_BY_HEADER})


def _encode(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _decode(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass(frozen=True, slots=True)
class Inbound:
    """An event to apply, with the message it came in (kept for dead letters)."""

    event: SessionEvent
    origin: Origin | None = None

    @property
    def redrive_of(self) -> int | None:
        """The dead letter this message says it redrives: a claim the store must vouch for."""
        return None if self.origin is None else self.origin.redrive_of


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message refused before it became an event (undecodable, unknown schema, wrong topic)."""

    reason: str
    detail: str
    origin: Origin
    event: SessionEvent | None = None
