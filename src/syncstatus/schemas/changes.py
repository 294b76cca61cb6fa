"""The change feed over HTTP: its cursor, its filters, and a status change as JSON.

Webhooks, the catch-up routes (`GET /changes`, `GET /connections/{id}/changes`) and the change
stream (`GET /changes/stream`) serve one shape: the `StatusChanged` record the status topic
carries (`StatusChangeMessages.record`, the one conversion, so no field can drift), as JSON,
plus the record's `cursor`.

A cursor is a position in commit order, `<xid>-<id>`: the status_history row's `feed_xid` (a
transaction id no earlier than its own, see migration 0013) and `feed_id`. Clients treat it as
opaque; it is stable across restarts. Standard library only, so the unit tier imports it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import total_ordering
from typing import Any

from syncstatus.statemachine.statuses import Status

CURSOR = re.compile(r"(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})")
MAX_BIGINT = 2**63 - 1


class InvalidCursor(ValueError):
    """Not a cursor this service hands out (a `ValueError`: the API answers 400)."""


@total_ordering
@dataclass(frozen=True, slots=True)
class FeedPosition:
    """A point in the feed: every record at or before it is behind, the others ahead."""

    xid: int
    id: int

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, FeedPosition):
            return NotImplemented
        return (self.xid, self.id) < (other.xid, other.id)

    def __str__(self) -> str:
        return f"{self.xid}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> FeedPosition:
        match = CURSOR.fullmatch(text.strip())
        if match is None:
            raise InvalidCursor(f"not a cursor: {text[:64]!r} (expected the `cursor` of a record)")
        xid, row = int(match[1]), int(match[2])
        if xid > MAX_BIGINT or row > MAX_BIGINT:
            raise InvalidCursor("cursor out of range")
        return cls(xid, row)


BEGINNING = FeedPosition(0, 0)
"""Before the first record ever recorded."""


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """Which records a subscription or a reader wants; every field given must match."""

    workspace: str | None = None
    apps: frozenset[str] | None = None
    statuses: frozenset[int] | None = None
    """The status a record moves to (`to_code`)."""
    errors_only: bool = False

    @classmethod
    def of(
        cls,
        workspace: str | None = None,
        apps: Iterable[str] | None = None,
        statuses: Iterable[int] | None = None,
        errors_only: bool = False,
    ) -> ChangeFilter:
        """Empty lists mean no filter; status codes are checked against the machine's."""
        codes = frozenset(int(Status(code)) for code in statuses or ())
        return cls(workspace or None, frozenset(apps or ()) or None, codes or None, errors_only)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """The same rule as the store's SQL (`store.changes`), on a StatusChanged record."""
        return (
            (self.workspace is None or record.get("workspace_id") == self.workspace)
            and (self.apps is None or record["app"] in self.apps)
            and (self.statuses is None or record["to_code"] in self.statuses)
            and (not self.errors_only or record["is_error"])
        )


ERROR_CODES = tuple(sorted(int(s) for s in Status if s.is_error))
"""The statuses `errors_only` keeps: failures and timeouts (`Status.is_error`)."""


def json_value(value: Any) -> Any:
    """A record's value as JSON has it: times in UTC ISO 8601 to the millisecond (as the Avro
    record has them), UUIDs as strings."""
    if isinstance(value, datetime):
        at = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def change_json(record: Mapping[str, Any], position: FeedPosition) -> dict[str, Any]:
    """A StatusChanged record and its cursor, as JSON values."""
    return {**{name: json_value(value) for name, value in record.items()}, "cursor": str(position)}


EVENT_TYPE = "connection.status_changed"
"""The `type` of a webhook payload (Standard Webhooks' payload structure)."""


def webhook_payload(change: Mapping[str, Any]) -> dict[str, Any]:
    """What a webhook delivers: `type`, `timestamp` (when syncstatus recorded the change) and
    `data`, the change as `change_json` made it."""
    return {"type": EVENT_TYPE, "timestamp": change["recorded_at"], "data": dict(change)}
