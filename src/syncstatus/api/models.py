"""The API's request and response bodies, and their conversion from the read model.

Class names are the schema names clients see in `/openapi.json`, so renaming one is a change to
the API, not a refactoring.
"""

from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncstatus.statemachine.commands import (
    MAX_SYNC_FREQUENCY_MINUTES,
    MIN_SYNC_FREQUENCY_MINUTES,
    IssuedCommand,
)
from syncstatus.statemachine.runs import RunOutcome
from syncstatus.statemachine.statuses import Status
from syncstatus.store.dead_letters import BUCKETS
from syncstatus.store.dead_letters import SORTABLE as DEAD_LETTER_SORTABLE
from syncstatus.store.queries import (
    SORTABLE,
    CommandLine,
    ConnectionSummary,
    HistoryEntry,
    SessionSummary,
)


class StatusOut(BaseModel):
    code: int
    name: str
    stage: str
    is_error: bool


class StatusRef(BaseModel):
    code: int
    name: str


class RunStateOut(BaseModel):
    state: RunOutcome | None = Field(description="null: no run of this part yet.")
    started_at: datetime | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    error: str | None = Field(description="The error of the last failure.")


class SummaryOut(BaseModel):
    connection_id: str
    workspace_id: str = Field(description="The workspace the connection belongs to.")
    data_source: str
    data_source_name: str = Field(description="As people write it: SYNCSTATUS_APP_NAMES.")
    business_account: str | None
    business_account_id: str | None
    credentials: str | None = Field(description="Active, Error, or null before any login.")
    credentials_error: str | None
    account_status: str
    active_accounts: int
    status: StatusOut
    created: datetime
    last_authorization: datetime | None
    last_sync: datetime | None
    reauthorization_failed_at: datetime | None = Field(
        description="When a re-authorization was last not completed while the earlier "
        "credentials kept working; null once one succeeds."
    )
    reauthorization_error: str | None
    sync_frequency_minutes: int
    can_extract: bool
    status_error: str | None = Field(
        description="Why the connection is in its error status; null unless it is in one."
    )
    status_failure_class: str | None = Field(
        description="The class of that failure (credentials, permission, rate_limit, "
        "source_unavailable, data, internal; unknown when its producer sent only error text)."
    )
    accounts_error: str | None = Field(description="Why its accounts could not be listed.")
    source_sync: RunStateOut = Field(
        description="Source data sync: the loading, deduplication and structuring stages."
    )
    data_refresh: RunStateOut = Field(description="Plan data refresh: the processing stage.")


class PageOut(BaseModel):
    items: list[SummaryOut]
    total: int
    page: int
    page_size: int


class AccountOut(BaseModel):
    account_id: str
    name: str
    status: str
    created: datetime
    updated: datetime | None


class CredentialOut(BaseModel):
    credential_id: str
    role: str
    added: datetime


class DetailOut(BaseModel):
    summary: SummaryOut
    accounts: list[AccountOut]
    credentials: list[CredentialOut]


class EntryOut(BaseModel):
    kind: str
    session_id: str
    event_type: str
    event_id: str
    occurred_at: datetime
    recorded_at: datetime
    sequence: int | None
    from_status: StatusRef | None
    to_status: StatusOut | None
    error: str | None
    detail: str | None
    requested_by: str | None = Field(
        None,
        description="Who issued the command that made this change (a Delete): the name of "
        "its API token; null for events.",
    )


class SessionOut(BaseModel):
    session_id: str
    started_at: datetime
    ended_at: datetime | None
    final_status: StatusOut
    duration_s: float | None
    errors: int


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class SessionDetailOut(BaseModel):
    summary: SessionOut
    entries: list[EntryOut]


class StatusInfoOut(StatusOut):
    description: str


class TransitionOut(BaseModel):
    event_type: str
    sources: list[int | None] = Field(description="null stands for a connection never seen.")
    target: int
    guard: str


class StatusesOut(BaseModel):
    statuses: list[StatusInfoOut]
    transitions: list[TransitionOut]


class CommandOut(BaseModel):
    command_id: str
    connection_id: str
    workspace_id: str = Field(description="The connection's workspace.")
    command: str
    requested_by: str = Field(description="The name of the API token it came with, or scheduler.")
    requested_at: datetime
    parameters: dict[str, str]


class HistoryOut(BaseModel):
    entries: list[EntryOut]
    commands: list[CommandOut] = Field(
        default_factory=list,
        description="The commands people issued on the connection, oldest first, each with "
        "requested_by: the name of the API token it came with. The scheduler's are not "
        "listed (retention prunes them once published).",
    )


class FrequencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(ge=MIN_SYNC_FREQUENCY_MINUTES, le=MAX_SYNC_FREQUENCY_MINUTES)


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


SortColumn = StrEnum("SortColumn", {name: name for name in SORTABLE})


class ErrorOut(BaseModel):
    detail: str


def status_out(code: int) -> StatusOut:
    status = Status(code)
    return StatusOut(
        code=code, name=status.label, stage=status.stage.label, is_error=status.is_error
    )


def summary_out(summary: ConnectionSummary) -> SummaryOut:
    """The read model flattens the status into four columns; the API nests them again."""
    fields = asdict(summary)
    for name in ("status_code", "status_name", "stage", "is_error"):
        fields.pop(name)
    return SummaryOut(**fields, status=status_out(summary.status_code))


def entry_out(entry: HistoryEntry) -> EntryOut:
    return EntryOut(
        **{k: v for k, v in asdict(entry).items() if k not in ("from_status", "to_status")},
        from_status=None
        if entry.from_status is None
        else StatusRef(code=entry.from_status, name=Status(entry.from_status).label),
        to_status=None if entry.to_status is None else status_out(entry.to_status),
    )


def session_out(session: SessionSummary) -> SessionOut:
    return SessionOut(
        **{k: v for k, v in asdict(session).items() if k != "final_status"},
        final_status=status_out(session.final_status),
    )


def command_line_out(command: CommandLine) -> CommandOut:
    return CommandOut(**asdict(command))


def command_out(command: IssuedCommand) -> CommandOut:
    return CommandOut(
        command_id=str(command.command_id),
        connection_id=command.connection_id,
        workspace_id=command.workspace_id,
        command=command.command.value,
        requested_by=command.requested_by,
        requested_at=command.requested_at,
        parameters=command.parameters,
    )


# -- dead letters


DeadLetterSort = StrEnum("DeadLetterSort", {name: name for name in DEAD_LETTER_SORTABLE})
Bucket = StrEnum("Bucket", {name: name for name in BUCKETS})


class DeadLetterOut(BaseModel):
    id: int
    reason: str
    detail: str
    event_id: str | None = Field(description="null: the message never decoded.")
    connection_id: str | None
    event_type: str | None
    from_status: StatusRef | None = Field(description="The status it was refused in.")
    producer: str | None
    app: str | None
    topic: str | None = Field(description="The input topic it came in on.")
    refused_at: datetime
    published_at: datetime | None = Field(description="When the dead-letter topic took it.")
    redriven_at: datetime | None = Field(description="When a redrive was last asked for.")
    redriven_by: str | None
    redrive_count: int


class DeadLetterPageOut(BaseModel):
    items: list[DeadLetterOut]
    total: int
    page: int
    page_size: int


class HeaderOut(BaseModel):
    name: str
    value: str | None = Field(description="The value as text, when it is UTF-8.")
    value_base64: str


class RedriveLineOut(BaseModel):
    requested_by: str
    requested_at: datetime
    published_at: datetime | None = Field(description="When its input topic took it again.")


class DeadLetterDetailOut(DeadLetterOut):
    partition: int | None
    offset: int | None
    key_base64: str | None
    value_base64: str | None = Field(description="The message as it came in; null: none.")
    headers: list[HeaderOut]
    event: dict[str, Any] | None = Field(description="The decoded event, when it decoded.")
    redrives: list[RedriveLineOut]


class VerdictOut(BaseModel):
    dead_letter_id: int
    outcome: str = Field(description="applied, parked, refused (again) or duplicate.")
    from_status: StatusRef | None
    to_status: StatusRef | None = Field(description="null unless it would change the status.")
    reason: str | None = Field(description="Why it would be refused again.")
    detail: str | None
    releases: int = Field(description="Parked events applying it would release too.")


class RefusedRedriveOut(BaseModel):
    dead_letter_id: int
    why: str


class RedriveOut(BaseModel):
    dry_run: bool
    requested: list[int] = Field(description="Dead letters queued for a redrive.")
    refused: list[RefusedRedriveOut] = Field(description="Those that cannot be redriven.")
    verdicts: list[VerdictOut] = Field(description="A dry run: what each would do now.")


class ScoreLineOut(BaseModel):
    producer: str | None = Field(description="null: messages that never decoded.")
    reason: str
    count: int
    bucket: datetime | None = Field(description="The bucket's start (UTC); null in totals.")


class ScorecardOut(BaseModel):
    since: datetime
    until: datetime
    bucket: Bucket
    totals: list[ScoreLineOut] = Field(description="Per producer and reason, most first.")
    series: list[ScoreLineOut] = Field(description="Per bucket too, oldest first.")
