"""The workspaces a caller may see, for the dashboard's workspace picker."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from syncstatus.api.dependencies import CallerScope, CurrentApplication

router = APIRouter(tags=["connections"])


class WorkspaceOut(BaseModel):
    workspace_id: str
    connections: int = Field(description="How many connections it lists (deleted ones aside).")


class WorkspacesOut(BaseModel):
    workspaces: list[WorkspaceOut] = Field(description="By id.")
    scope: str | None = Field(
        description="The one workspace the caller's token is confined to; null: every "
        "workspace (an unscoped token, or an anonymous public read)."
    )


@router.get("/workspaces", response_model=WorkspacesOut)
def workspaces(application: CurrentApplication, scope: CallerScope) -> WorkspacesOut:
    """The workspaces of stored connections the caller may see, each with its count of listed
    connections: every one for an unscoped token, its own alone (even without connections)
    for a scoped one. `GET /connections?workspace=` lists one."""
    return WorkspacesOut(
        workspaces=[
            WorkspaceOut(workspace_id=w.workspace_id, connections=w.connections)
            for w in application.connections.workspaces(scope=scope)
        ],
        scope=scope,
    )
