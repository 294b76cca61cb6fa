"""What the routes share: the running `Application`, the operator's token, and the id rule.

`create_app` puts the `Application` on `app.state`, so handlers take it through `Depends`
instead of closing over it, and the routers stay plain modules.
"""

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator

from syncstatus.api.guard import REFUSED, token_matches
from syncstatus.api.models import ErrorOut
from syncstatus.bootstrap import Application
from syncstatus.settings import Settings


def current_application(request: Request) -> Application:
    return request.app.state.application


CurrentApplication = Annotated[Application, Depends(current_application)]


def configured_token(settings: Settings) -> str | None:
    """The bearer token writes need; None when none is set, and then no write passes."""
    return settings.api_token.get_secret_value() if settings.api_token else None


bearer = HTTPBearer(auto_error=False)


def operator(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    application: CurrentApplication,
) -> str:
    """Write endpoints need the configured bearer token; without one set, none passes.
    `RequestGuard` already refused the others before reading their bodies: this check keeps a
    route safe on its own and puts the bearer scheme in the OpenAPI spec."""
    header = None if credentials is None else f"Bearer {credentials.credentials}".encode()
    if refused := token_matches(header, configured_token(application.settings)):
        raise HTTPException(
            refused,
            REFUSED[refused],
            headers={"WWW-Authenticate": "Bearer"} if refused == 401 else None,
        )
    return "api"


Operator = Annotated[str, Depends(operator)]

TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No bearer token."},
    403: {"model": ErrorOut, "description": "Wrong bearer token."},
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
