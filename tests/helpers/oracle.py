"""What a connection's status and view must be, read independently of the engine: the events
that really happened, in true order, sent one by one to the declared machine.

It shares nothing with `statemachine/connection.py`, `table.py`, `view.py`, `runs.py` or
`credentials.py`: no parking, no sessions judged, no stale rule. Those exist only because events
arrive out of order, and the oracle never sees arrival order. What it knows beyond the machine's
declaration it takes from the documents:

- failure classes (docs/contract.md): the class of a failure is the producer's, `unknown` when
  it sent error text alone, none without either; the view shows the class of the error status
  it is in. A failure of class `credentials` on a session's event makes the credentials Error;
  any other class leaves working credentials as they are. On `ACCOUNTS_SYNC_FAILED` it sets
  the accounts error only (the event's error, else "Accounts could not be listed"): account
  events belong to no session, so a late one could not be told from a current one.
- the card's two statuses (seed 004, as the issue defines them): the source data sync covers
  statuses 2, 11, 12, 13, 14, 15, 21, 22, 25, and 23 when it timed out at one of those; the plan
  data refresh covers 16, 17, 18, and 23 when it timed out at one of those. A transition into a
  covered error status (or such a 23) is an error: the run failed then, with the event's error
  (kept as the last failure's after later successes). Any other covered status is in progress,
  and the run started when the connection came into it from a status where the part was not
  running (outside the part, or one of its errors).
- where the issue is silent, as the owner decided:
  (1) a part succeeds only when the session goes on from its last status (15 -> 16,
  18 -> 19): at 15 or 18 the session can still time out to 23, which the issue counts as that
  part's error, so the part's work is not done while it sits there;
  (2) a run cut off by a status neither part covers (a new authorization 6, Deauthorized 8,
  Disconnected 26) fails then, with the event's error or "Interrupted: <the status's label>",
  so a card never shows a run in progress that nothing will finish.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from statemachine.exceptions import TransitionNotAllowed

from syncstatus.statemachine.events import EventType, Failure, SessionEvent, Substage
from syncstatus.statemachine.machine import NEW, ConnectionStatusMachine, GuardContext
from syncstatus.statemachine.statuses import Status

E = EventType
S = Status
_ABOUT_THE_CONNECTION = {
    E.DEAUTHORIZED,
    E.DISCONNECTED,
    E.ACCOUNTS_SYNC_STARTED,
    E.ACCOUNTS_SYNCED,
    E.ACCOUNTS_SYNC_FAILED,
}

CREDENTIALS = "credentials"
UNKNOWN = "unknown"

SUCCESS, IN_PROGRESS, ERROR = "success", "in_progress", "error"


@dataclass(frozen=True)
class Part:
    """One of the card's two statuses: the statuses it covers, and where a session goes on
    from the last of them when all goes well (which is when the part succeeds)."""

    name: str
    covers: frozenset[Status]
    then: Status


SOURCE_SYNC = Part(
    "source data sync",
    frozenset({S(2), S(11), S(12), S(13), S(14), S(15), S(21), S(22), S(25)}),
    S.PROCESSING,
)
DATA_REFRESH = Part("plan data refresh", frozenset({S(16), S(17), S(18)}), S.SYNCED)
PARTS = (SOURCE_SYNC, DATA_REFRESH)


@dataclass
class Run:
    """What a card shows of one part: its state, and when it last started, succeeded, failed
    (with the error it failed with)."""

    state: str | None = None
    started_at: datetime | None = None
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None


@dataclass
class Expected:
    status: Status | None = None
    session_id: str | None = None
    substages: frozenset[Substage] = frozenset()
    timed_out_from: Status | None = None
    credentials_valid: bool | None = None
    last_authorized_at: datetime | None = None
    last_synced_at: datetime | None = None
    reauthorization_failed_at: datetime | None = None
    accounts_state: str = "loading"
    accounts_error: str | None = None
    accounts: dict[str, tuple[str, str, datetime, datetime | None]] = field(default_factory=dict)
    main_credential: str | None = None
    status_error: str | None = None
    """The reason of the error status the connection is in (None outside one)."""
    failure_class: str | None = None
    """The class of that error (None outside one, or when it came with neither class nor
    text)."""
    source_sync: Run = field(default_factory=Run)
    data_refresh: Run = field(default_factory=Run)
    trace: list[tuple[Status | None, Status, EventType, str | None]] = field(default_factory=list)
    """Every status change, in true order, with its failure's class: what to read when the
    engine's view differs."""

    def run(self, part: Part) -> Run:
        return self.source_sync if part is SOURCE_SYNC else self.data_refresh


def class_of(failure: Failure | None, error: str | None) -> str | None:
    """What a failure reads as, by the contract's words."""
    if failure is not None:
        return failure.failure_class.value
    return UNKNOWN if error else None


class Oracle:
    """The truth sent one event at a time; `result` is what the connection must show."""

    def __init__(self, dedup_apps: frozenset[str]) -> None:
        self.dedup_apps = dedup_apps
        self.result = Expected()

    def apply(self, event: SessionEvent) -> None:
        """Raises (TransitionNotAllowed) if the story itself is illegal."""
        result = self.result
        if event.type.name.startswith("ACCOUNTS_"):
            _accounts(result, event)  # never the credentials, whatever the failure's class
            return
        before = result.status
        _send(result, event, event.app in self.dedup_apps)
        result.trace.append(
            (before, result.status, event.type, class_of(event.failure, event.error))
        )
        _credentials(result, event)
        _failure(result, event)
        for part in PARTS:
            _card(result.run(part), part, before, result.status, event)
        if event.type is E.SYNC_COMPLETED:
            result.last_synced_at = event.occurred_at
            for account_id, (name, status, created, _) in result.accounts.items():
                if status == "active":
                    result.accounts[account_id] = (name, status, created, event.occurred_at)

    def timeout_due(self) -> EventType | None:
        """The event syncstatus's own clock raises once the status stayed too long (None: it
        never times out there): Authorization times out as a login (20), any status the
        machine's declaration lets `stage_timed_out` leave times out to 23."""
        status = self.result.status
        if status is None:
            return None
        if status is S.AUTHORIZATION:
            return E.AUTHORIZATION_TIMED_OUT
        try:
            _machine(status, E.STAGE_TIMED_OUT, self._context())
        except TransitionNotAllowed:
            return None
        return E.STAGE_TIMED_OUT

    def _context(self) -> GuardContext:
        return GuardContext(
            completed_substages=self.result.substages,
            timed_out_from=self.result.timed_out_from,
            holds_credentials=bool(self.result.credentials_valid),
        )


def expected(truth: list[SessionEvent], dedup_apps: frozenset[str]) -> Expected:
    oracle = Oracle(dedup_apps)
    for event in truth:
        oracle.apply(event)
    return oracle.result


@functools.cache
def _sent(status: Status | None, kind: EventType, context: GuardContext) -> Status | Exception:
    machine = ConnectionStatusMachine(start_value=status or NEW)
    try:
        machine.send(kind.trigger, ctx=context)
    except TransitionNotAllowed as refused:
        return refused
    return Status(next(iter(machine.configuration_values)))


def _machine(status: Status | None, kind: EventType, context: GuardContext) -> Status:
    """Where the declared machine goes from `status` on `kind` (remembered: building a machine
    costs milliseconds); raises TransitionNotAllowed where it goes nowhere."""
    after = _sent(status, kind, context)
    if isinstance(after, Exception):
        raise after.with_traceback(None)
    return after


def _send(result: Expected, event: SessionEvent, dedup: bool) -> None:
    if event.type not in _ABOUT_THE_CONNECTION and event.session_id != result.session_id:
        result.session_id, result.substages = event.session_id, frozenset()
    context = GuardContext(
        deduplication_required=dedup,
        completed_substages=result.substages,
        timed_out_from=result.timed_out_from,
        holds_credentials=bool(result.credentials_valid),
    )
    # raises if the story itself is illegal
    before, result.status = result.status, _machine(result.status, event.type, context)
    result.timed_out_from = before if result.status is S.TIMED_OUT else None

    if event.type is E.PROCESSING_STARTED:
        result.substages = frozenset()
    elif event.type is E.PROCESSING_SUBSTAGE_COMPLETED:
        result.substages |= {event.substage}


def _credentials(result: Expected, event: SessionEvent) -> None:
    """Success gives credentials, revocation takes them, and so does any failure of a session's
    event classed as `credentials`; a failed or abandoned login of another class takes nothing
    from credentials that work, and is remembered."""
    if _credentials_class(result, event):
        return
    if event.type is E.AUTHORIZATION_SUCCEEDED:
        result.credentials_valid = True
        result.last_authorized_at = event.occurred_at
        result.reauthorization_failed_at = None
        result.main_credential = event.attributes.get("credential_id", result.main_credential)
        if result.accounts_state == "loading":
            result.accounts_state = "ready"
    elif event.type in (E.AUTHORIZATION_FAILED, E.AUTHORIZATION_TIMED_OUT):
        if result.credentials_valid:
            result.reauthorization_failed_at = event.occurred_at
        else:
            result.credentials_valid = False
    elif event.type in (E.DEAUTHORIZED, E.DISCONNECTED, E.CONNECTION_DELETED):
        result.credentials_valid = False


def _credentials_class(result: Expected, event: SessionEvent) -> bool:
    """docs/contract.md: a failure of class CREDENTIALS on a session's event makes the
    credentials Error (never called for account events: see `_accounts`)."""
    if event.failure is not None and event.failure.failure_class.value == CREDENTIALS:
        result.credentials_valid = False
        return True
    return False


def _failure(result: Expected, event: SessionEvent) -> None:
    """An error status shows its reason and class; any other status neither."""
    if result.status is not None and result.status.is_error:
        result.status_error = event.error
        result.failure_class = class_of(event.failure, event.error)
    else:
        result.status_error = result.failure_class = None


def _covered(part: Part, before: Status | None, after: Status) -> bool:
    if after is S.TIMED_OUT:
        return before in part.covers
    return after in part.covers


def _card(run: Run, part: Part, before: Status | None, after: Status, event: SessionEvent) -> None:
    running = before in part.covers and not before.is_error
    if _covered(part, before, after):
        if after.is_error:
            run.state, run.failed_at, run.error = ERROR, event.occurred_at, event.error
        else:
            if not running:
                run.started_at = event.occurred_at
            run.state = IN_PROGRESS
    elif running and after is part.then:
        run.state, run.succeeded_at = SUCCESS, event.occurred_at
    elif running:
        run.state, run.failed_at = ERROR, event.occurred_at
        run.error = event.error or f"Interrupted: {after.label}"


def _accounts(result: Expected, event: SessionEvent) -> None:
    """Account events set the accounts and their error only (docs/contract.md)."""
    if event.type is E.ACCOUNTS_SYNCED:
        before = result.accounts
        result.accounts = {
            a.account_id: (
                a.name,
                a.status,
                before[a.account_id][2] if a.account_id in before else event.occurred_at,
                before[a.account_id][3] if a.account_id in before else None,
            )
            for a in event.accounts or ()
        }
        result.accounts_state, result.accounts_error = "ready", None
    elif event.type is E.ACCOUNTS_SYNC_FAILED:
        result.accounts_state = "error"
        result.accounts_error = event.error or "Accounts could not be listed"
