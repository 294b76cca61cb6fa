"""The connections view people read (seeds 000–004): credentials, accounts, what can be done.

A projection of the same transitions and activities the engine records, updated in the same
transaction; pure like the rest of the domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from syncstatus.statemachine.connection import Activity, Transition
from syncstatus.statemachine.credentials import credentials_after, is_reauthorization_failure
from syncstatus.statemachine.events import EventType
from syncstatus.statemachine.runs import Part, RunState
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import DEFAULT_WORKSPACE

DEFAULT_SYNC_FREQUENCY_MINUTES = 1440

BUSINESS_ACCOUNT = "business_account"
BUSINESS_ACCOUNT_ID = "business_account_id"
CREDENTIAL_ID = "credential_id"

_CREDENTIALS_LOST = {
    EventType.AUTHORIZATION_FAILED: "Invalid credentials",
    EventType.AUTHORIZATION_TIMED_OUT: "Authorization was not completed in time",
    EventType.DEAUTHORIZED: "The app's connection ended; reconnect it",
    EventType.DISCONNECTED: "The app was disconnected",
    EventType.CONNECTION_DELETED: "The connection was deleted",
}
_REAUTHORIZATION_NOT_COMPLETED = {
    EventType.AUTHORIZATION_FAILED: "Re-authorization failed; the earlier credentials still work",
    EventType.AUTHORIZATION_TIMED_OUT: "Re-authorization was not completed; the earlier "
    "credentials still work",
}


class AccountsState(Enum):
    LOADING = "loading"
    READY = "ready"
    ERROR = "error"


def credentials_label(valid: bool | None) -> str | None:
    """Active / Error as the Connected sources list shows it; None before any login."""
    if valid is None:
        return None
    return "Active" if valid else "Error"


def account_status(state: AccountsState, count: int) -> str:
    if state is AccountsState.LOADING:
        return "Loading accounts"
    if state is AccountsState.ERROR:
        return "Error"
    if not count:
        return "No accounts"
    return f"{count} account" if count == 1 else f"{count} accounts"


def data_source_name(app: str, names: Mapping[str, str]) -> str:
    """The name people give the data source: the configured one, else the id humanised
    (`facebook_ads` -> `Facebook Ads`)."""
    return names.get(app) or " ".join(w.capitalize() for w in app.replace("-", "_").split("_"))


def can_extract(
    credentials_valid: bool | None, active_accounts: int, deleted_at: datetime | None
) -> bool:
    """Extraction needs an active connection with at least one active account."""
    return bool(credentials_valid) and active_accounts > 0 and deleted_at is None


@dataclass(slots=True)
class AccountRow:
    account_id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        """The data source reports each account's status; only an active one can be read."""
        return self.status.strip().lower() == "active"


@dataclass(slots=True)
class CredentialRow:
    credential_id: str
    added_at: datetime


@dataclass(slots=True)
class ConnectionView:
    connection_id: str
    app: str
    status: Status
    created_at: datetime
    business_account: str | None = None
    business_account_id: str | None = None
    credentials_valid: bool | None = None
    credentials_error: str | None = None
    accounts_state: AccountsState = AccountsState.LOADING
    accounts_error: str | None = None
    last_authorized_at: datetime | None = None
    last_synced_at: datetime | None = None
    reauthorization_failed_at: datetime | None = None
    reauthorization_error: str | None = None
    sync_frequency_minutes: int = DEFAULT_SYNC_FREQUENCY_MINUTES
    deleted_at: datetime | None = None
    status_error: str | None = None
    status_failure_class: str | None = None
    source_sync: RunState = field(default_factory=RunState)
    data_refresh: RunState = field(default_factory=RunState)
    workspace_id: str = DEFAULT_WORKSPACE
    accounts: dict[str, AccountRow] = field(default_factory=dict)
    credentials: list[CredentialRow] = field(default_factory=list)
    accounts_changed: bool = False
    credentials_changed: bool = False

    @property
    def credentials_label(self) -> str | None:
        return credentials_label(self.credentials_valid)

    @property
    def account_status(self) -> str:
        return account_status(self.accounts_state, len(self.accounts))

    @property
    def active_accounts(self) -> int:
        return sum(a.is_active for a in self.accounts.values())

    @property
    def can_extract(self) -> bool:
        return can_extract(self.credentials_valid, self.active_accounts, self.deleted_at)

    @property
    def sync_in_progress(self) -> bool:
        return self.status.syncing and self.deleted_at is None

    @property
    def can_sync_accounts(self) -> bool:
        """Listing accounts needs valid credentials of a connection not deleted."""
        return bool(self.credentials_valid) and self.deleted_at is None

    @property
    def main_credential(self) -> str | None:
        return self.credentials[-1].credential_id if self.credentials else None

    def apply_transition(self, t: Transition) -> None:
        self.status = t.to_status
        self.status_error = t.error if t.to_status.is_error else None
        failure = t.failure_class if t.to_status.is_error else None
        self.status_failure_class = None if failure is None else failure.value
        self.source_sync.apply(Part.SOURCE_SYNC, t)
        self.data_refresh.apply(Part.DATA_REFRESH, t)
        self._apply_credentials(t)
        if t.event_type is EventType.AUTHORIZATION_SUCCEEDED:
            self.last_authorized_at = t.occurred_at
            self.business_account = t.attributes.get(BUSINESS_ACCOUNT, self.business_account)
            self.business_account_id = t.attributes.get(
                BUSINESS_ACCOUNT_ID, self.business_account_id
            )
            if self.accounts_state is AccountsState.LOADING:
                self.accounts_state = AccountsState.READY
            credential = t.attributes.get(CREDENTIAL_ID)
            if credential:
                self._add_credential(credential, t.occurred_at)
        elif t.event_type is EventType.SYNC_COMPLETED:
            self.last_synced_at = t.occurred_at
            for account in self.accounts.values():
                if account.is_active:
                    account.updated_at = t.occurred_at
            self.accounts_changed = True
        elif t.event_type is EventType.CONNECTION_DELETED:
            self.deleted_at = t.recorded_at

    def _apply_credentials(self, t: Transition) -> None:
        """The same rule the aggregate's guards read; a failed re-authorization is shown, not
        taken for lost credentials."""
        kind, failure = t.event_type, t.failure_class
        if is_reauthorization_failure(self.credentials_valid, kind, failure):
            self.reauthorization_failed_at = t.occurred_at
            self.reauthorization_error = t.error or _REAUTHORIZATION_NOT_COMPLETED[kind]
            return
        if kind is EventType.AUTHORIZATION_SUCCEEDED:
            self.reauthorization_failed_at = self.reauthorization_error = None
        valid = credentials_after(self.credentials_valid, kind, failure)
        if valid != self.credentials_valid:
            self.credentials_valid = valid
            lost = _CREDENTIALS_LOST.get(kind, "The data source refused the credentials")
            self.credentials_error = None if valid else t.error or lost

    def apply_activity(self, activity: Activity) -> None:
        event = activity.event
        if event.type is EventType.ACCOUNTS_SYNCED:
            listed = {a.account_id: a for a in event.accounts or ()}
            self.accounts = {
                account_id: AccountRow(
                    account_id,
                    a.name,
                    a.status,
                    self.accounts[account_id].created_at
                    if account_id in self.accounts
                    else event.occurred_at,
                    self.accounts[account_id].updated_at if account_id in self.accounts else None,
                )
                for account_id, a in listed.items()
            }
            self.accounts_state, self.accounts_error = AccountsState.READY, None
            self.accounts_changed = True
        elif event.type is EventType.ACCOUNTS_SYNC_FAILED:
            self.accounts_state = AccountsState.ERROR
            self.accounts_error = event.error or "Accounts could not be listed"

    def _add_credential(self, credential_id: str, at: datetime) -> None:
        """The newest credentials become main; earlier ones stay, as secondary."""
        self.credentials = [c for c in self.credentials if c.credential_id != credential_id]
        self.credentials.append(CredentialRow(credential_id, at))
        self.credentials_changed = True


def project(
    view: ConnectionView | None, applied: list[Transition | Activity]
) -> ConnectionView | None:
    """The view after what one unit of work decided for one connection, in the order it was
    decided (None: still unseen), so the view never depends on how events were batched."""
    first = next((a for a in applied if isinstance(a, Transition)), None)
    if view is None and first is not None:
        view = ConnectionView(
            first.connection_id,
            first.app,
            first.to_status,
            first.recorded_at,
            workspace_id=first.workspace_id,
        )
    if view is None:
        return None
    for fact in applied:
        if isinstance(fact, Transition):
            view.apply_transition(fact)
        else:
            view.apply_activity(fact)
    return view
