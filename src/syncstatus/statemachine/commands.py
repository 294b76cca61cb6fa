"""What a person may ask of a connection (seeds 000, 002, 004), and when it is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from syncstatus.statemachine.view import ConnectionView
from syncstatus.statemachine.workspaces import DEFAULT_WORKSPACE

MIN_SYNC_FREQUENCY_MINUTES = 15
MAX_SYNC_FREQUENCY_MINUTES = 7 * 24 * 60


class CommandType(Enum):
    SYNC_AND_REFRESH = "SYNC_AND_REFRESH"
    SYNC_ACCOUNTS = "SYNC_ACCOUNTS"
    RECONNECT = "RECONNECT"
    DELETE = "DELETE"
    SET_SYNC_FREQUENCY = "SET_SYNC_FREQUENCY"


@dataclass(frozen=True, slots=True)
class IssuedCommand:
    command_id: uuid.UUID
    connection_id: str
    app: str
    command: CommandType
    parameters: dict[str, str]
    requested_by: str
    requested_at: datetime
    workspace_id: str = DEFAULT_WORKSPACE
    """The connection's workspace, carried on the commands topic (ConnectionCommand v2)."""


class CommandRefused(Exception):
    """The command is not allowed for this connection now; the message says why."""


def check(
    view: ConnectionView,
    command: CommandType,
    sync_frequency_minutes: int | None = None,
    force: bool = False,
) -> None:
    """Raise CommandRefused unless `command` may be issued for `view` now. A Sync and Refresh
    while one runs would start a second beside it: refused unless forced."""
    if command is CommandType.SYNC_AND_REFRESH and not view.can_extract:
        if not view.credentials_valid:
            raise CommandRefused("credentials are not valid: re-connect the data source first")
        raise CommandRefused("no account is connected: sync accounts first")
    if command is CommandType.SYNC_AND_REFRESH and view.sync_in_progress and not force:
        raise CommandRefused(
            f"a sync is in progress ({view.status.label}): wait for it to end, or force it"
        )
    if command is CommandType.SYNC_ACCOUNTS and not view.can_sync_accounts:
        raise CommandRefused("credentials are not valid: re-connect the data source first")
    if command is CommandType.SET_SYNC_FREQUENCY and not (
        sync_frequency_minutes is not None
        and MIN_SYNC_FREQUENCY_MINUTES <= sync_frequency_minutes <= MAX_SYNC_FREQUENCY_MINUTES
    ):
        raise CommandRefused(
            f"sync frequency must be {MIN_SYNC_FREQUENCY_MINUTES} to "
            f"{MAX_SYNC_FREQUENCY_MINUTES} minutes"
        )
