"""Connected sources: the searchable, sortable list the dashboard shows, and one in full."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from syncstatus.api.dependencies import CallerScope, CurrentApplication
from syncstatus.api.models import (
    AccountOut,
    CredentialOut,
    DetailOut,
    ErrorOut,
    Order,
    PageOut,
    SortColumn,
    summary_out,
)

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def build_router(Id: Any, Workspace: Any) -> APIRouter:
    """The connection routes, with `Id` (see `id_path`) as the type of a connection id and
    `Workspace` (see `id_query`) as that of the workspace filter."""
    router = APIRouter(tags=["connections"])

    @router.get("/connections", response_model=PageOut)
    def list_connections(
        application: CurrentApplication,
        scope: CallerScope,
        search: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        sort: SortColumn = SortColumn.created,
        order: Order = Order.desc,
        page: Annotated[int, Query(ge=1, le=100000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        workspace: Workspace = None,
    ) -> PageOut:
        """Connected sources, searched by data source name, sorted by any column but Status
        and Actions, of one workspace when `workspace` is given. A token scoped to a
        workspace lists its own alone: any other `workspace` lists nothing (as a workspace
        without connections does)."""
        result = application.connections.list(
            search, sort, order is Order.desc, page, page_size, workspace, scope=scope
        )
        return PageOut(
            items=[summary_out(s) for s in result.items],
            total=result.total,
            page=result.page,
            page_size=result.page_size,
        )

    @router.get(
        "/connections/{connection_id}",
        response_model=DetailOut,
        responses={404: {"model": ErrorOut}},
    )
    def connection(
        connection_id: Id, application: CurrentApplication, scope: CallerScope
    ) -> DetailOut:
        detail = application.connections.connection(connection_id, scope=scope)
        if detail is None:
            raise HTTPException(404, f"no connection {connection_id}")
        return DetailOut(
            summary=summary_out(detail.summary),
            accounts=[AccountOut(**asdict(a)) for a in detail.accounts],
            credentials=[CredentialOut(**asdict(c)) for c in detail.credentials],
        )

    return router
