"""Whether a connection holds working credentials: one rule, read by the aggregate's guards and
by the connections view."""

from __future__ import annotations

from syncstatus.statemachine.events import EventType, FailureClass

_LOSE = frozenset({EventType.DEAUTHORIZED, EventType.DISCONNECTED, EventType.CONNECTION_DELETED})
_ATTEMPT_FAILED = frozenset({EventType.AUTHORIZATION_FAILED, EventType.AUTHORIZATION_TIMED_OUT})


def credentials_after(
    valid: bool | None, event_type: EventType, failure: FailureClass | None = None
) -> bool | None:
    """The credentials' validity after `event_type` (None: no login was ever attempted).

    A login that succeeded gives working credentials; the app revoking access, a disconnect, a
    delete, or any failure its producer classes as `credentials` takes them away. A login that
    failed or was abandoned for another reason takes nothing from credentials that already
    worked: the person closed a re-connect pop-up, and the old ones still work.
    """
    if failure is FailureClass.CREDENTIALS:
        return False
    if event_type is EventType.AUTHORIZATION_SUCCEEDED:
        return True
    if event_type in _ATTEMPT_FAILED:
        return bool(valid)
    if event_type in _LOSE:
        return False
    return valid


def is_reauthorization_failure(
    valid: bool | None, event_type: EventType, failure: FailureClass | None = None
) -> bool:
    """A login attempt that failed while earlier credentials kept working."""
    return bool(valid) and event_type in _ATTEMPT_FAILED and failure is not FailureClass.CREDENTIALS
