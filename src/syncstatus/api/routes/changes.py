"""The change feed over HTTP: catch-up after a point, and a live stream of server-sent events.

Every record is the `StatusChanged` record of the status topic as JSON, plus its `cursor`
(schemas/changes.py). A receiver that finds a gap in a connection's `sequence` fetches
`GET /connections/{id}/changes?after=<last sequence it has>`; one that follows everything
keeps the last `cursor` and asks `GET /changes?after=<cursor>`, or holds `GET /changes/stream`
open and resumes it with `Last-Event-ID`. Reads confine themselves to the caller's workspace.
"""

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StringConstraints, create_model
from starlette.concurrency import run_in_threadpool

from syncstatus.api.dependencies import CallerScope, CurrentApplication
from syncstatus.api.models import ErrorOut
from syncstatus.schemas.changes import BEGINNING, ChangeFilter, FeedPosition, change_json
from syncstatus.schemas.codec import STATUS_CHANGED, load_schema
from syncstatus.schemas.messages import StatusChangeMessages
from syncstatus.statemachine.workspaces import Scope
from syncstatus.store.changes import Change, FeedPage

AppId = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
MAX_LIMIT = 1000
STREAM_PAGE = 500
CURSOR_DOC = "A record's `cursor`: the records after it. Opaque; stable across restarts."
_messages = StatusChangeMessages()


def _json_type(avro: Any) -> Any:
    """The JSON type of an Avro field as `schemas.changes.json_value` writes it."""
    if isinstance(avro, list):
        kinds = [k for k in avro if k != "null"]
        inner = _json_type(kinds[0]) if len(kinds) == 1 else Any
        return inner | None if "null" in avro else inner
    if isinstance(avro, dict):
        if avro.get("logicalType") == "timestamp-millis":
            return Annotated[str, Field(json_schema_extra={"format": "date-time"})]
        if avro.get("logicalType") == "uuid":
            return Annotated[str, Field(json_schema_extra={"format": "uuid"})]
        return _json_type(avro["type"])
    return {"string": str, "int": int, "long": int, "boolean": bool}.get(avro, Any)


def _change_model() -> type[BaseModel]:
    """`ChangeOut` from StatusChanged.avsc itself, so the API's record cannot drift from the
    topic's: every field with its doc, and `cursor`."""
    fields: dict[str, Any] = {
        f["name"]: (_json_type(f["type"]), Field(description=f.get("doc")))
        for f in load_schema(STATUS_CHANGED)["fields"]
    }
    fields["cursor"] = (str, Field(description="Its position in the feed: " + CURSOR_DOC))
    return create_model(
        "ChangeOut",
        __doc__="A status change, as the `StatusChanged` record of the status topic.",
        **fields,
    )


ChangeOut = _change_model()


class ChangesOut(BaseModel):
    changes: list[ChangeOut]  # type: ignore[valid-type]
    next: str = Field(
        description="Where to ask next (`after`): past the records returned and past any the "
        "filters passed over; the same cursor when nothing new was final yet."
    )


class ConnectionChangesOut(BaseModel):
    changes: list[ChangeOut]  # type: ignore[valid-type]


def _cursor(value: str | None, default: FeedPosition | None) -> FeedPosition | None:
    return default if value is None else FeedPosition.parse(value)


def filter_dependency(Workspace: Any) -> Any:
    """The filters of the feed's routes, as query parameters (`Workspace`: see `id_query`)."""

    def change_filter(
        workspace: Workspace = None,
        app: Annotated[
            list[AppId] | None, Query(max_length=50, description="Only these apps' records.")
        ] = None,
        status: Annotated[
            list[int] | None,
            Query(max_length=30, description="Only records to these statuses (`to_code`)."),
        ] = None,
        errors_only: Annotated[
            bool, Query(description="Only records to an error status (`is_error`).")
        ] = False,
    ) -> ChangeFilter:
        return ChangeFilter.of(workspace, app, status, errors_only)

    return Annotated[ChangeFilter, Depends(change_filter)]


def _out(change: Change) -> dict[str, Any]:
    return change_json(_messages.record(change.transition), change.position)


def build_router(Id: Any, Workspace: Any) -> APIRouter:
    """The feed's routes, with `Id` and `Workspace` (see `id_path`, `id_query`) as the types of
    connection and workspace ids."""
    router = APIRouter(tags=["changes"], responses={400: {"model": ErrorOut}})
    Filter = filter_dependency(Workspace)

    @router.get(
        "/connections/{connection_id}/changes",
        response_model=ConnectionChangesOut,
        responses={404: {"model": ErrorOut}},
    )
    def connection_changes(
        connection_id: Id,
        application: CurrentApplication,
        scope: CallerScope,
        after: Annotated[
            int, Query(ge=0, le=2**31 - 1, description="The last sequence the caller has.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, Any]:
        """A connection's records after sequence `after`, in sequence order: what a receiver
        that found a gap missed. Kept after a delete, like the history."""
        found = application.changes.of_connection(connection_id, after, limit, scope=scope)
        if found is None:
            raise HTTPException(404, f"no history for connection {connection_id}")
        return {"changes": [_out(c) for c in found]}

    @router.get("/changes", response_model=ChangesOut)
    def changes(
        application: CurrentApplication,
        scope: CallerScope,
        where: Filter,
        after: Annotated[str | None, Query(max_length=64, description=CURSOR_DOC)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, Any]:
        """Every connection's records after `after` (from the first record without it), in
        commit order (each connection's in sequence order), that the filters want; ask
        again with `next` until `changes` is empty. A record is listed once every
        transaction older than it has ended, so none can appear later behind a cursor."""
        position = _cursor(after, BEGINNING)
        page = application.changes.after(position, where, limit, scope=scope)
        return {"changes": [_out(c) for c in page.changes], "next": str(page.scanned_to)}

    @router.get(
        "/changes/stream",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "Server-sent events: `event: status`, `id:` the record's "
                "cursor, `data:` the record as `GET /changes` lists it; a comment every "
                "`SYNCSTATUS_CHANGE_STREAM_HEARTBEAT_S` of silence.",
            }
        },
    )
    async def stream(
        application: CurrentApplication,
        scope: CallerScope,
        where: Filter,
        after: Annotated[
            str | None,
            Query(max_length=64, description=CURSOR_DOC + " Without it: from now."),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(max_length=64, description="Resume after this event (the browser sends it)."),
        ] = None,
    ) -> StreamingResponse:
        """The records the filters want as they become final, for as long as the client
        stays; `Last-Event-ID` (or `after`) resumes exactly after the last one received."""
        start = _cursor(last_event_id or after, None)
        if start is None:
            start = await run_in_threadpool(application.changes.head)
        settings = application.settings
        events = _events(
            application,
            start,
            where,
            scope,
            settings.change_stream_poll_s,
            settings.change_stream_heartbeat_s,
        )
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return router


async def _events(
    application: Any,
    position: FeedPosition,
    where: ChangeFilter,
    scope: Scope,
    poll_s: float,
    heartbeat_s: float,
) -> AsyncIterator[str]:
    yield f"retry: {int(poll_s * 2000)}\n\n"
    quiet_since = time.monotonic()
    while True:
        page: FeedPage = await run_in_threadpool(
            application.changes.after, position, where, STREAM_PAGE, scope=scope
        )
        for change in page.changes:
            data = json.dumps(_out(change), separators=(",", ":"))
            yield f"id: {change.position}\nevent: status\ndata: {data}\n\n"
        if page.scanned_to > position:
            if not page.changes or page.scanned_to != page.changes[-1].position:
                yield f"id: {page.scanned_to}\n\n"  # past records the filters passed over
            position = page.scanned_to
            quiet_since = time.monotonic()
        if page.full:
            continue
        if time.monotonic() - quiet_since >= heartbeat_s:
            yield ": heartbeat\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(poll_s)
