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
from typing import Protocol

from syncstatus.service.inbound import Origin, RejectedMessage
from syncstatus.statemachine.connection import Connection, Policy, Refusal
from syncstatus.statemachine.view import ConnectionView


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
