"""What the use cases need from the outside world, as protocols the adapters implement.

A unit of work is one atomic change: its repositories hang off it (`uow.connections`,
`uow.views`, ...), everything they write lands together when the block ends normally and
nothing lands when it raises. `store/` implements it on PostgreSQL, `tests/helpers/fake_store`
in memory; one contract suite runs against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import NamedTuple, Protocol

from syncstatus.service.inbound import Origin, RejectedMessage
from syncstatus.statemachine.commands import IssuedCommand
from syncstatus.statemachine.connection import Connection, Policy, Refusal
from syncstatus.statemachine.view import ConnectionView
from syncstatus.statemachine.workspaces import Scope


class ConcurrentUpdate(Exception):
    """Another writer changed a connection this unit of work loaded; retry the whole batch."""


class StoreError(Exception):
    """The store failed the work; a loop logs it and looks again later."""


class StoreUnavailable(StoreError):
    """The store could not do the work now (an outage, a lock timeout, a deadlock): the work
    was not wrong, so it is retried, never dead-lettered."""


class ProcessedEvents(Protocol):
    def claim(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Record the ids as processed; return those not processed before (the fresh ones)."""
        ...


class Connections(Protocol):
    """Connection aggregates, each locked from load until the unit of work ends."""

    def load(self, sessions: Mapping[str, Iterable[str]]) -> dict[str, Connection]:
        """The connections named (keys) with their parked events and, among the sessions
        named (values), those they left; a connection never seen comes back new."""
        ...

    def lock_due(self, now: datetime, policy: Policy, limit: int) -> dict[str, Connection]:
        """Connections whose status outlived its timeout that no other writer holds."""
        ...

    def lock_expired_parked(self, cutoff: datetime, limit: int) -> dict[str, Connection]:
        """Connections with an event parked before `cutoff` that no other writer holds."""
        ...

    def save(
        self, connections: Iterable[Connection], origins: Mapping[uuid.UUID, Origin]
    ) -> dict[uuid.UUID, Origin]:
        """Write what the aggregates decided: status, sessions, history and its outbox,
        activity, parked events. Return the messages the unparked events came in. Raises
        ConcurrentUpdate if another writer came first."""
        ...


class Views(Protocol):
    def load(self, connection_ids: Iterable[str]) -> dict[str, ConnectionView]: ...

    def save(self, views: Sequence[ConnectionView]) -> None: ...


class DeadLetters(Protocol):
    def add(
        self,
        refusals: Sequence[Refusal],
        origins: Mapping[uuid.UUID, Origin],
        rejected: Sequence[RejectedMessage],
    ) -> None:
        """Refused events (with the message each came in, when known) and rejected messages."""
        ...

    def messages(self, dead_letter_ids: Sequence[int], scope: Scope) -> dict[int, Origin | None]:
        """The message each dead letter named came in (None: one the service raised itself);
        ids of no dead letter are left out, and so are those outside `scope` (a dead letter is
        in a workspace when its connection is; one of no stored connection is in none)."""
        ...

    def redriven(self, dead_letter_ids: Sequence[int]) -> dict[int, uuid.UUID | None]:
        """The event id each named dead letter refused (None: it never decoded), for those
        whose redrive was asked for; the others are left out."""
        ...

    def request_redrive(self, dead_letter_ids: Sequence[int], by: str, at: datetime) -> None:
        """Record who asked for each redrive and when, and queue each for the redrive relay,
        which publishes the message again once this unit of work commits."""
        ...


class UnitOfWork(Protocol):
    processed: ProcessedEvents
    connections: Connections
    views: Views
    dead_letters: DeadLetters


class Store(Protocol):
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """Commits when the block ends normally, rolls back when it raises; database errors
        come out as StoreError or StoreUnavailable."""
        ...


class Due(NamedTuple):
    """A connection the scheduler asks a command of."""

    connection_id: str
    app: str
    workspace_id: str


class Commands(Protocol):
    """Commands and the view columns that schedule them."""

    def lock_view(self, connection_id: str, scope: Scope) -> ConnectionView | None:
        """The connection's view, locked until the unit of work ends; None if there is no
        such connection, it was deleted, or it is outside `scope`."""
        ...

    def add(self, command: IssuedCommand) -> None: ...

    def set_sync_frequency(self, connection_id: str, minutes: int) -> None:
        """The next sync comes `minutes` after the last one (or now)."""
        ...

    def lock_due_syncs(self, now: datetime, limit: int) -> list[Due]:
        """Connections that can extract, are due a sync and run none now, locked; those
        another writer holds are skipped."""
        ...

    def lock_due_account_syncs(self, now: datetime, limit: int) -> list[Due]:
        """Connections whose accounts can be listed and are due."""
        ...

    def schedule_next_sync(self, connection_id: str, now: datetime) -> None:
        """The next sync at the connection's frequency after `now`."""
        ...

    def schedule_next_account_sync(self, connection_id: str, at: datetime) -> None: ...


class CommandsUnitOfWork(UnitOfWork, Protocol):
    commands: Commands


class CommandsStore(Protocol):
    def unit_of_work(self) -> AbstractContextManager[CommandsUnitOfWork]: ...
