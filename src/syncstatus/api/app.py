"""The connections API (FastAPI, OpenAPI at /openapi.json) and the dashboard it serves.

Handlers only translate HTTP to the read model (`ConnectionQueries`) and the command store;
every rule lives in the domain.
"""

import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from syncstatus.api.guard import REFUSED, RequestGuard, token_matches
from syncstatus.bootstrap import Application
from syncstatus.devtools.docs import transition_rows
from syncstatus.statemachine.commands import (
    MAX_SYNC_FREQUENCY_MINUTES,
    MIN_SYNC_FREQUENCY_MINUTES,
    CommandRefused,
    CommandType,
    IssuedCommand,
)
from syncstatus.statemachine.statuses import Status
from syncstatus.store.commands import ConnectionNotFound
from syncstatus.store.queries import (
    SORTABLE,
    ConnectionSummary,
    HistoryEntry,
    SessionSummary,
)

STATIC = Path(__file__).with_name("static")
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class StatusOut(BaseModel):
    code: int
    name: str
    stage: str
    is_error: bool


class StatusRef(BaseModel):
    code: int
    name: str


class SummaryOut(BaseModel):
    connection_id: str
    data_source: str
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


class HistoryOut(BaseModel):
    entries: list[EntryOut]


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
    command: str
    requested_by: str
    requested_at: datetime
    parameters: dict[str, str]


class FrequencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(ge=MIN_SYNC_FREQUENCY_MINUTES, le=MAX_SYNC_FREQUENCY_MINUTES)


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


SortColumn = StrEnum("SortColumn", {name: name for name in SORTABLE})


class ErrorOut(BaseModel):
    detail: str


def _id_rule(pattern: str) -> Callable[[str], str]:
    """The consumer's id rule, in Python's regex engine (pydantic's has no look-ahead)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError("not an id syncstatus takes")
        return value

    return check


def _status(code: int) -> StatusOut:
    status = Status(code)
    return StatusOut(
        code=code, name=status.label, stage=status.stage.label, is_error=status.is_error
    )


def _summary(s: ConnectionSummary) -> SummaryOut:
    fields = asdict(s)
    for name in ("status_code", "status_name", "stage", "is_error"):
        fields.pop(name)
    return SummaryOut(**fields, status=_status(s.status_code))


def _entry(e: HistoryEntry) -> EntryOut:
    return EntryOut(
        **{k: v for k, v in asdict(e).items() if k not in ("from_status", "to_status")},
        from_status=None
        if e.from_status is None
        else StatusRef(code=e.from_status, name=Status(e.from_status).label),
        to_status=None if e.to_status is None else _status(e.to_status),
    )


def _session(s: SessionSummary) -> SessionOut:
    return SessionOut(
        **{k: v for k, v in asdict(s).items() if k != "final_status"},
        final_status=_status(s.final_status),
    )


def _command(c: IssuedCommand) -> CommandOut:
    return CommandOut(
        command_id=str(c.command_id),
        connection_id=c.connection_id,
        command=c.command.value,
        requested_by=c.requested_by,
        requested_at=c.requested_at,
        parameters=c.parameters,
    )


WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No bearer token."},
    403: {"model": ErrorOut, "description": "Wrong bearer token."},
    404: {"model": ErrorOut, "description": "Unknown or deleted connection."},
    409: {"model": ErrorOut, "description": "Refused now, with the reason."},
}


def create_app(application: Application) -> FastAPI:
    settings = application.settings
    api = FastAPI(
        title="syncstatus",
        version="1",
        description="Connected sources, their accounts and sync history, and the commands a "
        "person may issue. Status changes themselves are published on Kafka "
        "(see docs/contract.md).",
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
    )
    api.add_middleware(
        RequestGuard,
        token=lambda: settings.api_token.get_secret_value() if settings.api_token else None,
        max_body_bytes=settings.api_max_body_bytes,
        relaxed_paths=("/docs",) if settings.api_docs else (),
    )
    bearer = HTTPBearer(auto_error=False)
    Id = Annotated[
        str,
        PathParam(min_length=1, max_length=settings.max_id_length),
        AfterValidator(_id_rule(settings.id_pattern)),
    ]

    def operator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        """Write endpoints need the configured bearer token; without one set, none passes.
        `RequestGuard` already refused the others before reading their bodies."""
        header = None if credentials is None else f"Bearer {credentials.credentials}".encode()
        expected = settings.api_token.get_secret_value() if settings.api_token else None
        if refused := token_matches(header, expected):
            raise HTTPException(
                refused,
                REFUSED[refused],
                headers={"WWW-Authenticate": "Bearer"} if refused == 401 else None,
            )
        return "api"

    Operator = Annotated[str, Depends(operator)]

    def issue(
        connection_id: str, command: CommandType, who: str, minutes: int | None = None
    ) -> CommandOut:
        try:
            return _command(application.commands.issue(connection_id, command, who, minutes))
        except ConnectionNotFound:
            raise HTTPException(404, f"no connection {connection_id}") from None
        except CommandRefused as refused:
            raise HTTPException(409, str(refused)) from None

    @api.exception_handler(ValueError)
    async def bad_value(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @api.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @api.get("/connections", response_model=PageOut, tags=["connections"])
    def list_connections(
        search: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        sort: SortColumn = SortColumn.created,
        order: Order = Order.desc,
        page: Annotated[int, Query(ge=1, le=100000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> PageOut:
        """Connected sources, searched by data source name, sorted by any column but Status
        and Actions."""
        result = application.connections.list(search, sort, order is Order.desc, page, page_size)
        return PageOut(
            items=[_summary(s) for s in result.items],
            total=result.total,
            page=result.page,
            page_size=result.page_size,
        )

    @api.get(
        "/connections/{connection_id}",
        response_model=DetailOut,
        tags=["connections"],
        responses={404: {"model": ErrorOut}},
    )
    def connection(connection_id: Id) -> DetailOut:
        detail = application.connections.connection(connection_id)
        if detail is None:
            raise HTTPException(404, f"no connection {connection_id}")
        return DetailOut(
            summary=_summary(detail.summary),
            accounts=[AccountOut(**asdict(a)) for a in detail.accounts],
            credentials=[CredentialOut(**asdict(c)) for c in detail.credentials],
        )

    @api.get(
        "/connections/{connection_id}/history",
        response_model=HistoryOut,
        tags=["history"],
        responses={404: {"model": ErrorOut}},
    )
    def history(connection_id: Id) -> HistoryOut:
        """Every status change and activity, oldest first; kept after a delete (audit)."""
        entries = application.connections.history(connection_id)
        if not entries:
            raise HTTPException(404, f"no history for connection {connection_id}")
        return HistoryOut(entries=[_entry(e) for e in entries])

    @api.get(
        "/connections/{connection_id}/sessions",
        response_model=SessionsOut,
        tags=["history"],
        responses={404: {"model": ErrorOut}},
    )
    def sessions(connection_id: Id) -> SessionsOut:
        found = application.connections.sessions(connection_id)
        if not found:
            raise HTTPException(404, f"no sessions for connection {connection_id}")
        return SessionsOut(sessions=[_session(s) for s in found])

    @api.get(
        "/connections/{connection_id}/sessions/{session_id}",
        response_model=SessionDetailOut,
        tags=["history"],
        responses={404: {"model": ErrorOut}},
    )
    def session(
        connection_id: Id,
        session_id: Id,
    ) -> SessionDetailOut:
        detail = application.connections.session(connection_id, session_id)
        if detail is None:
            raise HTTPException(404, f"no session {session_id} for connection {connection_id}")
        return SessionDetailOut(
            summary=_session(detail.summary), entries=[_entry(e) for e in detail.entries]
        )

    @api.get("/statuses", response_model=StatusesOut, tags=["statuses"])
    def statuses() -> StatusesOut:
        """The status table and the transitions, generated from the state machine."""
        return StatusesOut(
            statuses=[
                StatusInfoOut(**_status(int(s)).model_dump(), description=s.description)
                for s in Status
            ],
            transitions=[
                TransitionOut(
                    event_type=e.value,
                    sources=[None if s is None else int(s) for s in sources],
                    target=int(target),
                    guard=guard,
                )
                for e, sources, target, guard in transition_rows()
            ],
        )

    @api.post(
        "/connections/{connection_id}/sync",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )
    def sync(connection_id: Id, who: Operator) -> CommandOut:
        """Sync and Refresh; refused unless the connection is active with an account."""
        return issue(connection_id, CommandType.SYNC_AND_REFRESH, who)

    @api.post(
        "/connections/{connection_id}/sync-accounts",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )
    def sync_accounts(connection_id: Id, who: Operator) -> CommandOut:
        return issue(connection_id, CommandType.SYNC_ACCOUNTS, who)

    @api.post(
        "/connections/{connection_id}/reconnect",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )
    def reconnect(connection_id: Id, who: Operator) -> CommandOut:
        """Re-connect is always available."""
        return issue(connection_id, CommandType.RECONNECT, who)

    @api.delete(
        "/connections/{connection_id}",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )
    def delete(connection_id: Id, who: Operator) -> CommandOut:
        """Stops extraction at once and cannot be undone; history stays, no data is touched."""
        return issue(connection_id, CommandType.DELETE, who)

    @api.put(
        "/connections/{connection_id}/sync-frequency",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )
    def sync_frequency(connection_id: Id, body: FrequencyIn, who: Operator) -> CommandOut:
        return issue(connection_id, CommandType.SET_SYNC_FREQUENCY, who, body.minutes)

    @api.get(
        "/dead-letters/{dead_letter_id}/original",
        tags=["dead letters"],
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
            **{code: WRITE_RESPONSES[code] for code in (401, 403)},
            404: {"model": ErrorOut, "description": "No such dead letter, or no message."},
        },
    )
    def dead_letter_original(
        dead_letter_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], who: Operator
    ) -> Response:
        """The refused message's value, byte for byte: the dead-letter topic carries a
        too-large one without it (header `dead_letter_id`). Needs the token: it is the
        producer's data."""
        original = application.dead_letters.original(dead_letter_id)
        if original is None:
            raise HTTPException(404, f"no message kept for dead letter {dead_letter_id}")
        return Response(original, media_type="application/octet-stream")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    return api
