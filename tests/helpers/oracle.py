"""What a connection's status and view must be, read independently of the engine: the events
that really happened, in true order, sent one by one to the declared machine.

It shares nothing with `statemachine/connection.py`, `table.py` or `view.py`: no parking, no
sessions judged, no stale rule. Those exist only because events arrive out of order, and the
oracle never sees arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from syncstatus.statemachine.events import EventType, SessionEvent, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.statemachine.statuses import Status

E = EventType
_ABOUT_THE_CONNECTION = {
    E.DEAUTHORIZED,
    E.DISCONNECTED,
    E.ACCOUNTS_SYNC_STARTED,
    E.ACCOUNTS_SYNCED,
    E.ACCOUNTS_SYNC_FAILED,
}


@dataclass
class Expected:
    status: Status | None = None
    session_id: str | None = None
    substages: frozenset[Substage] = frozenset()
    credentials_valid: bool | None = None
    last_authorized_at: datetime | None = None
    last_synced_at: datetime | None = None
    reauthorization_failed_at: datetime | None = None
    accounts_state: str = "loading"
    accounts: dict[str, tuple[str, str, datetime, datetime | None]] = field(default_factory=dict)
    main_credential: str | None = None


def expected(truth: list[SessionEvent], dedup_apps: frozenset[str]) -> Expected:
    result = Expected()
    for event in truth:
        if event.type.name.startswith("ACCOUNTS_"):
            _accounts(result, event)
            continue
        _send(result, event, event.app in dedup_apps)
        _credentials(result, event)
        if event.type is E.SYNC_COMPLETED:
            result.last_synced_at = event.occurred_at
            for account_id, (name, status, created, _) in result.accounts.items():
                if status == "active":
                    result.accounts[account_id] = (name, status, created, event.occurred_at)
    return result


def _send(result: Expected, event: SessionEvent, dedup: bool) -> None:
    if event.type not in _ABOUT_THE_CONNECTION and event.session_id != result.session_id:
        result.session_id, result.substages = event.session_id, frozenset()
    machine = ConnectionStatusMachine(start_value=result.status or NEW)
    context = GuardContext(
        deduplication_required=dedup,
        completed_substages=result.substages,
        holds_credentials=bool(result.credentials_valid),
    )
    machine.send(event.type.trigger, ctx=context)  # raises if the story itself is illegal
    result.status = Status(next(iter(machine.configuration_values)))

    if event.type is E.PROCESSING_STARTED:
        result.substages = frozenset()
    elif event.type is E.PROCESSING_SUBSTAGE_COMPLETED:
        result.substages |= {event.substage}


def _credentials(result: Expected, event: SessionEvent) -> None:
    """Success gives credentials, revocation takes them; a failed or abandoned login takes
    nothing from credentials that work, and is remembered."""
    if event.type is E.AUTHORIZATION_SUCCEEDED:
        result.credentials_valid = True
        result.last_authorized_at = event.occurred_at
        result.reauthorization_failed_at = None
        result.main_credential = event.attributes.get("credential_id", result.main_credential)
        if result.accounts_state == "loading":
            result.accounts_state = "ready"
    elif event.type in (E.AUTHORIZATION_FAILED, E.AUTHORIZATION_TIMED_OUT):
        if result.credentials_valid:
            result.reauthorization_failed_at = event.occurred_at
        else:
            result.credentials_valid = False
    elif event.type in (E.DEAUTHORIZED, E.DISCONNECTED):
        result.credentials_valid = False


def _accounts(result: Expected, event: SessionEvent) -> None:
    if event.type is E.ACCOUNTS_SYNCED:
        before = result.accounts
        result.accounts = {
            a.account_id: (
                a.name,
                a.status,
                before[a.account_id][2] if a.account_id in before else event.occurred_at,
                before[a.account_id][3] if a.account_id in before else None,
            )
            for a in event.accounts or ()
        }
        result.accounts_state = "ready"
    elif event.type is E.ACCOUNTS_SYNC_FAILED:
        result.accounts_state = "error"
