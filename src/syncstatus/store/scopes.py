"""The SQL that confines a read to a scope (statemachine/workspaces.py): one workspace, or every
workspace when the scope is None. The read-side queries take a scope as a required argument and
put one of these in their WHERE, so a read is confined in the database, never filtered after.

Both give a clause to append to a WHERE (empty for every workspace) and its bound parameters;
the workspace is always bound, never spliced into the SQL.
"""

from __future__ import annotations

from typing import Any

from syncstatus.statemachine.workspaces import Scope

PARAMETER = "scope_workspace"


def workspace_is(column: str, scope: Scope) -> tuple[str, dict[str, Any]]:
    """` AND <column> = :scope_workspace`, for rows that carry the workspace themselves."""
    if scope is None:
        return "", {}
    return f" AND {column} = :{PARAMETER}", {PARAMETER: scope}


def connection_in(column: str, scope: Scope) -> tuple[str, dict[str, Any]]:
    """` AND <column> names a connection of the scope's workspace`, for rows that name a
    connection (dead letters, activity): a row whose connection was never stored is in no
    workspace, so only an unscoped reader sees it."""
    if scope is None:
        return "", {}
    return (
        f" AND EXISTS (SELECT 1 FROM connections scoped WHERE scoped.connection_id = {column} "
        f"AND scoped.workspace_id = :{PARAMETER})",
        {PARAMETER: scope},
    )
