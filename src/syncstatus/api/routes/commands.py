"""The commands a person may issue on a connection.

Each is stored and published on Kafka for the connection's owner to carry out, so every one
answers 202 with the stored command, or refuses for the reason the domain gives.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException

from syncstatus.api.dependencies import (
    TOKEN_RESPONSES,
    Admin,
    CallerScope,
    CurrentApplication,
    Operator,
)
from syncstatus.api.models import CommandOut, ErrorOut, FrequencyIn, command_out
from syncstatus.service.commands import ConnectionNotFound
from syncstatus.statemachine.commands import CommandRefused, CommandType

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **TOKEN_RESPONSES,
    404: {
        "model": ErrorOut,
        "description": "Unknown or deleted connection, or one of another workspace than the "
        "token's.",
    },
    409: {"model": ErrorOut, "description": "Refused now, with the reason."},
}


class CommandIssuer:
    """Issues a command on behalf of the authenticated token (an operate or admin one), whose
    name the command records as `requested_by`, within the token's workspace; what every
    write endpoint depends on, so the token check, the scope and the mapping of refusals to
    404 and 409 live once."""

    def __init__(self, application: CurrentApplication, who: Operator, scope: CallerScope) -> None:
        self.application = application
        self.who = who
        self.scope = scope

    def __call__(
        self,
        connection_id: str,
        command: CommandType,
        minutes: int | None = None,
        force: bool = False,
    ) -> CommandOut:
        try:
            issued = self.application.commands.issue(
                connection_id, command, self.who, minutes, force, scope=self.scope
            )
        except ConnectionNotFound:
            raise HTTPException(404, f"no connection {connection_id}") from None
        except CommandRefused as refused:
            raise HTTPException(409, str(refused)) from None
        return command_out(issued)


class AdminCommandIssuer(CommandIssuer):
    """The same, for the commands only an admin token may issue (Delete)."""

    def __init__(self, application: CurrentApplication, who: Admin, scope: CallerScope) -> None:
        super().__init__(application, who, scope)


Issue = Annotated[CommandIssuer, Depends()]
AdminIssue = Annotated[AdminCommandIssuer, Depends()]


def command_route(router: APIRouter, method: str, path: str) -> Callable[[Endpoint], Endpoint]:
    """The declaration every write shares: 202 with the stored command, or a refusal."""
    return router.api_route(
        path,
        methods=[method],
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
        responses=WRITE_RESPONSES,
    )


def build_router(Id: Any) -> APIRouter:
    """The command routes, with `Id` (see `id_path`) as the type of a connection id."""
    router = APIRouter()

    @command_route(router, "POST", "/connections/{connection_id}/sync")
    def sync(connection_id: Id, issue: Issue, force: bool = False) -> CommandOut:
        """Sync and Refresh; refused unless the connection is active with an account, and
        while a sync runs unless `force` is true."""
        return issue(connection_id, CommandType.SYNC_AND_REFRESH, force=force)

    @command_route(router, "POST", "/connections/{connection_id}/sync-accounts")
    def sync_accounts(connection_id: Id, issue: Issue) -> CommandOut:
        return issue(connection_id, CommandType.SYNC_ACCOUNTS)

    @command_route(router, "POST", "/connections/{connection_id}/reconnect")
    def reconnect(connection_id: Id, issue: Issue) -> CommandOut:
        """Re-connect is always available."""
        return issue(connection_id, CommandType.RECONNECT)

    @command_route(router, "DELETE", "/connections/{connection_id}")
    def delete(connection_id: Id, issue: AdminIssue) -> CommandOut:
        """Stops extraction at once and cannot be undone; history stays, no data is touched.
        Needs an admin token."""
        return issue(connection_id, CommandType.DELETE)

    @command_route(router, "PUT", "/connections/{connection_id}/sync-frequency")
    def sync_frequency(connection_id: Id, body: FrequencyIn, issue: Issue) -> CommandOut:
        return issue(connection_id, CommandType.SET_SYNC_FREQUENCY, body.minutes)

    return router
