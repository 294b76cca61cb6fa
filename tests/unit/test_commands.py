"""When a person's command is refused: the rules of statemachine/commands.py on views."""

from datetime import UTC, datetime

import pytest

from syncstatus.statemachine.commands import CommandRefused, CommandType, check
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.view import AccountRow, ConnectionView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def extractable(status: Status) -> ConnectionView:
    view = ConnectionView("c1", "facebook_ads", status, T0, credentials_valid=True)
    view.accounts["a1"] = AccountRow("a1", "Main", "active", T0, None)
    return view


@pytest.mark.parametrize("status", list(Status))
def test_sync_and_refresh_is_refused_exactly_while_a_sync_runs(status):
    view = extractable(status)
    if status.syncing:
        with pytest.raises(CommandRefused, match=f"a sync is in progress \\({status.label}\\)"):
            check(view, CommandType.SYNC_AND_REFRESH)
    else:
        check(view, CommandType.SYNC_AND_REFRESH)
    check(view, CommandType.SYNC_AND_REFRESH, force=True)


def test_the_first_sync_after_authorization_is_not_blocked():
    assert not Status.AUTHORIZED.syncing
    check(extractable(Status.AUTHORIZED), CommandType.SYNC_AND_REFRESH)


def test_force_never_lifts_the_extraction_rule():
    view = extractable(Status.LOADING)
    view.accounts.clear()
    with pytest.raises(CommandRefused, match="no account is connected"):
        check(view, CommandType.SYNC_AND_REFRESH, force=True)
