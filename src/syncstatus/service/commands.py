"""Commands: what a person asks of a connection, and the syncs the scheduler asks for.

Each is checked against the connection's view, recorded in the same unit of work, and relayed
to the commands topic afterwards, the same outbox pattern as status changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from syncstatus.service.engine import record, utc_now
from syncstatus.service.ports import CommandsStore, CommandsUnitOfWork, Due
from syncstatus.statemachine.commands import CommandType, IssuedCommand, check
from syncstatus.statemachine.connection import Connection
from syncstatus.statemachine.policy import Policy
from syncstatus.statemachine.workspaces import Scope

SCHEDULER = "scheduler"
"""Who the scheduler's commands are requested by; retention prunes them once published."""


class ConnectionNotFound(LookupError):
    """No such connection, it was deleted, or it is outside the caller's scope."""


class CommandService:
    def __init__(
        self, store: CommandsStore, policy: Policy, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store, self.policy, self.clock = store, policy, clock

    def issue(
        self,
        connection_id: str,
        command: CommandType,
        requested_by: str,
        sync_frequency_minutes: int | None = None,
        force: bool = False,
        *,
        scope: Scope,
    ) -> IssuedCommand:
        """Check and record one command; CommandRefused if not allowed now. A Sync and
        Refresh pushes the scheduler's next sync of the connection back by its frequency.
        A connection outside `scope` (None: every workspace) is ConnectionNotFound, exactly
        as an unknown one, and nothing is written.

        The view row is locked, so two deletes (or a delete and a sync) cannot both pass. A
        Delete is the connection's last transition, so it first takes the connection's lock,
        as every writer of a connection does, before the view row's.
        """
        with self.store.unit_of_work() as uow:
            closing = (
                uow.connections.load({connection_id: ()})[connection_id]
                if command is CommandType.DELETE
                else None
            )
            view = uow.commands.lock_view(connection_id, scope)
            if view is None:
                raise ConnectionNotFound(connection_id)
            check(view, command, sync_frequency_minutes, force)
            parameters = (
                {"sync_frequency_minutes": str(sync_frequency_minutes)}
                if command is CommandType.SET_SYNC_FREQUENCY
                else {}
            )
            now = self.clock()
            issued = IssuedCommand(
                uuid.uuid4(),
                connection_id,
                view.app,
                command,
                parameters,
                requested_by,
                now,
                view.workspace_id,
            )
            if closing is not None:
                self._close(uow, closing, issued)
            elif sync_frequency_minutes is not None:
                uow.commands.set_sync_frequency(connection_id, sync_frequency_minutes)
            elif command is CommandType.SYNC_AND_REFRESH:
                uow.commands.schedule_next_sync(connection_id, now)
            uow.commands.add(issued)
            return issued

    def _close(self, uow: CommandsUnitOfWork, connection: Connection, by: IssuedCommand) -> None:
        """The final status record (to 26, caused by the command); every later event of the
        connection is refused, and its parked ones are refused now."""
        uow.processed.claim([by.command_id])
        deletion = connection.deletion(by.command_id, by.requested_at)
        connection.accept(deletion, by.requested_at, self.policy)
        record(uow, [connection])

    def schedule_due(self, now: datetime, accounts_every: timedelta, limit: int) -> int:
        """Ask for the syncs that are due (at each connection's frequency, and an accounts
        sync every `accounts_every`); rows another scheduler holds are skipped. Returns how
        many were asked for."""
        with self.store.unit_of_work() as uow:
            syncs = uow.commands.lock_due_syncs(now, limit)
            for due in syncs:
                uow.commands.add(self._scheduled(due, CommandType.SYNC_AND_REFRESH))
                uow.commands.schedule_next_sync(due.connection_id, now)
            account_syncs = uow.commands.lock_due_account_syncs(now, limit)
            for due in account_syncs:
                uow.commands.add(self._scheduled(due, CommandType.SYNC_ACCOUNTS))
                uow.commands.schedule_next_account_sync(due.connection_id, now + accounts_every)
        return len(syncs) + len(account_syncs)

    def _scheduled(self, due: Due, command: CommandType) -> IssuedCommand:
        return IssuedCommand(
            uuid.uuid4(),
            due.connection_id,
            due.app,
            command,
            {},
            SCHEDULER,
            self.clock(),
            due.workspace_id,
        )
