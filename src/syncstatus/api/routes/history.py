"""A connection's past: every status change and activity, and the sync sessions they form.

Kept after a delete, for audit, so these routes answer for deleted connections too.
"""

from typing import Any

from fastapi import APIRouter, HTTPException

from syncstatus.api.dependencies import CallerScope, CurrentApplication
from syncstatus.api.models import (
    ErrorOut,
    HistoryOut,
    SessionDetailOut,
    SessionsOut,
    command_line_out,
    entry_out,
    session_out,
)


def build_router(Id: Any) -> APIRouter:
    """The history routes, with `Id` (see `id_path`) as the type of connection and session ids."""
    router = APIRouter(tags=["history"], responses={404: {"model": ErrorOut}})

    @router.get("/connections/{connection_id}/history", response_model=HistoryOut)
    def history(
        connection_id: Id, application: CurrentApplication, scope: CallerScope
    ) -> HistoryOut:
        """Every status change and activity, oldest first, and the commands people issued,
        each with who issued it; kept after a delete (audit)."""
        connections = application.connections
        entries = connections.history(connection_id, scope=scope)
        if not entries:
            raise HTTPException(404, f"no history for connection {connection_id}")
        return HistoryOut(
            entries=[entry_out(e) for e in entries],
            commands=[
                command_line_out(c) for c in connections.commands(connection_id, scope=scope)
            ],
        )

    @router.get("/connections/{connection_id}/sessions", response_model=SessionsOut)
    def sessions(
        connection_id: Id, application: CurrentApplication, scope: CallerScope
    ) -> SessionsOut:
        found = application.connections.sessions(connection_id, scope=scope)
        if not found:
            raise HTTPException(404, f"no sessions for connection {connection_id}")
        return SessionsOut(sessions=[session_out(s) for s in found])

    @router.get(
        "/connections/{connection_id}/sessions/{session_id}", response_model=SessionDetailOut
    )
    def session(
        connection_id: Id, session_id: Id, application: CurrentApplication, scope: CallerScope
    ) -> SessionDetailOut:
        detail = application.connections.session(connection_id, session_id, scope=scope)
        if detail is None:
            raise HTTPException(404, f"no session {session_id} for connection {connection_id}")
        return SessionDetailOut(
            summary=session_out(detail.summary), entries=[entry_out(e) for e in detail.entries]
        )

    return router
