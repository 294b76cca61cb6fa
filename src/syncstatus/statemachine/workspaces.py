"""Workspaces: every connection belongs to exactly one, for good.

A workspace is one customer's set of connections (the seeds' "Connected sources" is one
workspace's list). A new connection takes the workspace its first applied event names, or
`DEFAULT_WORKSPACE` when that event names none; afterwards an event that names another workspace
is refused (`workspace_mismatch`), and one that names none is taken as the connection's own.

A *scope* is what a reader or a command is confined to: one workspace's id, or None for every
workspace (an unscoped token, the command line, the service itself). Every read-side query and
every command takes one explicitly, so no caller can forget to confine what it reads.
"""

from __future__ import annotations

DEFAULT_WORKSPACE = "default"
"""The workspace of a connection whose first event named none (and of every connection stored
before workspaces existed)."""

Scope = str | None
"""The workspace a caller is confined to; None: every workspace."""

EVERY_WORKSPACE: Scope = None
"""The scope of the command line and the service itself, and of an unscoped token."""


def in_scope(workspace_id: str, scope: Scope) -> bool:
    """Whether a connection of `workspace_id` is visible to, and may be acted on within, `scope`."""
    return scope is None or workspace_id == scope
