"""Where a message came from, kept with every parked or refused event so that a dead letter can
carry the original key and bytes untouched."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


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
