"""What the routes share: the running `Application`, who the token is (and whether its role
allows the route), the workspace it is confined to, and the id rule.

`create_app` puts the `Application` on `app.state`, so handlers take it through `Depends`
instead of closing over it, and the routers stay plain modules.
"""

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator

from syncstatus.api.guard import READS, REFUSED, authenticate, bearer_token
from syncstatus.api.models import ErrorOut
from syncstatus.bootstrap import Application
from syncstatus.settings import Settings
from syncstatus.statemachine.workspaces import Scope
from syncstatus.tokens import ApiToken, Role


def current_application(request: Request) -> Application:
    return request.app.state.application


CurrentApplication = Annotated[Application, Depends(current_application)]


bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

ANONYMOUS = "anonymous"
"""Who reads without a token, where `SYNCSTATUS_API_PUBLIC_READS` lets them."""


def _refuse(status: int, detail: str) -> HTTPException:
    return HTTPException(
        status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None
    )


def presented(request: Request, needed: Role, public: bool = True) -> ApiToken | None:
    """The request's token, if its role is at least `needed`; 401 without a token, 403 with
    an unknown one or one whose role is lower. Reads pass without a token when reads are
    public (None: anonymous). `RequestGuard` refused the unknown ones before reading their
    bodies: this check keeps a route safe on its own."""
    settings = request.app.state.application.settings
    raw = dict(request.scope["headers"]).get(b"authorization")  # as the guard reads it
    if needed is Role.READ and public and settings.api_public_reads and bearer_token(raw) is None:
        return None
    found = authenticate(raw, settings.tokens)
    if isinstance(found, int):
        raise _refuse(found, REFUSED[found])
    if not found.allows(needed):
        raise _refuse(
            403, f"the bearer token's role ({found.role}) does not allow this; it needs {needed}"
        )
    return found


def authenticated(request: Request, needed: Role, public: bool = True) -> str:
    """The name of the request's token (`anonymous` for a public read), as `presented`."""
    found = presented(request, needed, public)
    return ANONYMOUS if found is None else found.name


def reader(request: Request, _: Credentials) -> str:
    """Reads: any valid token (or none, with public reads)."""
    return authenticated(request, Role.READ)


def producer_data_reader(request: Request, _: Credentials) -> str:
    """A producer's own messages (a dead letter's bytes and headers): any valid token, even
    where reads are public, since what the producer sent is theirs, not the view's."""
    return authenticated(request, Role.READ, public=False)


def operator(request: Request, _: Credentials) -> str:
    """Commands: a token with the operate or admin role."""
    return authenticated(request, Role.OPERATE)


def admin(request: Request, _: Credentials) -> str:
    """Delete and redrive: a token with the admin role."""
    return authenticated(request, Role.ADMIN)


def caller_scope(request: Request, _: Credentials) -> Scope:
    """The workspace the request is confined to: a scoped token's (`name:role:hash:workspace`),
    or None, every workspace, for an unscoped token and for an anonymous read where reads are
    public. Any valid token passes here; the route's role dependency checks the role. Every
    route that reads or acts on connections or dead letters takes it and hands it to the read
    model or the command, which confine themselves (another workspace's connection reads as
    an unknown one: 404, never 403)."""
    found = presented(request, Role.READ, public=request.method in READS)
    return None if found is None else found.workspace


Reader = Annotated[str, Depends(reader)]
ProducerDataReader = Annotated[str, Depends(producer_data_reader)]
Operator = Annotated[str, Depends(operator)]
Admin = Annotated[str, Depends(admin)]
"""Each resolves to the token's name: what a command records as `requested_by`. The bearer
dependency only puts the scheme in the OpenAPI spec; the header is read as the guard read it,
so both hash the very same bytes."""
CallerScope = Annotated[Scope, Depends(caller_scope)]
"""The caller's workspace, or None for every workspace: see `caller_scope`."""

TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No bearer token."},
    403: {"model": ErrorOut, "description": "Wrong bearer token, or its role does not allow this."},
}


def matches_id_rule(pattern: str) -> Callable[[str], str]:
    """The consumer's id rule, in Python's regex engine (pydantic's has no look-ahead)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError("not an id syncstatus takes")
        return value

    return check


def id_path(settings: Settings) -> Any:
    """The type of every id in a path: exactly the ids the consumer takes, so each route can
    serve every connection and session it stored. It depends on the settings, which is why the
    routers with ids are built per app."""
    return Annotated[
        str,
        PathParam(min_length=1, max_length=settings.max_id_length),
        AfterValidator(matches_id_rule(settings.id_pattern)),
    ]


def id_query(settings: Settings, description: str) -> Any:
    """An optional query parameter holding an id (a workspace's): the same rule as `id_path`."""
    check = matches_id_rule(settings.id_pattern)
    return Annotated[
        str | None,
        Query(min_length=1, max_length=settings.max_id_length, description=description),
        AfterValidator(lambda value: None if value is None else check(value)),
    ]
