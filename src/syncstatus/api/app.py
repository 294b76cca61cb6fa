"""The connections API (FastAPI, OpenAPI at /openapi.json) and the dashboard it serves.

Handlers only translate HTTP to the read model (`ConnectionQueries`) and the command store;
every rule lives in the domain. This module only assembles the app: the guard in front, the
routers of `api.routes`, and the dashboard's page and static files.
"""

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from syncstatus.api.dependencies import TOKEN_RESPONSES, id_path, id_query, reader
from syncstatus.api.guard import RequestGuard
from syncstatus.api.routes import changes as change_feed
from syncstatus.api.routes import (
    commands,
    connections,
    dead_letters,
    explain,
    history,
    statuses,
    webhooks,
    workspaces,
)
from syncstatus.bootstrap import Application

STATIC = Path(__file__).with_name("static")


async def bad_value(_: Request, error: ValueError) -> JSONResponse:
    """A `ValueError` out of a handler means the input was wrong: 400, not a 500."""
    return JSONResponse({"detail": str(error)}, status_code=400)


def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html")


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
    api.state.application = application
    api.add_middleware(
        RequestGuard,
        tokens=settings.tokens,
        max_body_bytes=settings.api_max_body_bytes,
        public_reads=settings.api_public_reads,
        relaxed_paths=("/docs",) if settings.api_docs else (),
    )
    api.add_exception_handler(ValueError, bad_value)
    api.get("/", include_in_schema=False)(dashboard)
    Id = id_path(settings)
    # The guard already asks every read for a token (unless reads are public); the routers'
    # `reader` states it per route too, and puts it in the OpenAPI spec. Commands check their
    # own roles (operate, admin).
    read = {"dependencies": [Depends(reader)], "responses": TOKEN_RESPONSES}
    Workspace = id_query(settings, "Only the connections of this workspace.")
    api.include_router(connections.build_router(Id, Workspace), **read)
    api.include_router(workspaces.router, **read)
    api.include_router(history.build_router(Id), **read)
    api.include_router(explain.build_router(Id), **read)
    api.include_router(statuses.router, **read)
    api.include_router(commands.build_router(Id))
    api.include_router(dead_letters.router, **read)
    feed_workspace = id_query(settings, "Only this workspace's records.")
    api.include_router(change_feed.build_router(Id, feed_workspace), **read)
    api.include_router(webhooks.build_router(Id))  # admin, route by route
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    return api
