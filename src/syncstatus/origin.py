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
    value: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": None if self.key is None else base64.b64encode(self.key).decode(),
            "value": base64.b64encode(self.value).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        key = data["key"]
        return cls(
            topic=data["topic"],
            partition=data["partition"],
            offset=data["offset"],
            key=None if key is None else base64.b64decode(key),
            value=base64.b64decode(data["value"]),
        )
