"""The status codes of a data connection, exactly as the product documents number them.

Codes 3, 4, 5, 10 and 24 are not statuses; `Status(code)` raises for them, so every boundary
that turns an integer into a status refuses them the same way.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cached_property


class Stage(IntEnum):
    """The stages of a data-sharing session, in the order a session passes them."""

    AUTHORIZATION = 1
    LOADING = 2
    DEDUPLICATION = 3
    STRUCTURING = 4
    PROCESSING = 5
    END = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class Status(IntEnum):
    LOADING = 2
    AUTHORIZATION = 6
    ERROR_IN_AUTHORIZATION = 7
    DEAUTHORIZED = 8
    AUTHORIZED = 9
    LOADING_ERROR = 11
    LOADED = 12
    STRUCTURING = 13
    STRUCTURING_ERROR = 14
    STRUCTURED = 15
    PROCESSING = 16
    PROCESSING_ERROR = 17
    PROCESSED = 18
    SYNCED = 19
    AUTHORIZATION_TIMEDOUT = 20
    DEDUPLICATION = 21
    DEDUPLICATION_ERROR = 22
    TIMED_OUT = 23
    WAITING_FOR_WEBHOOK = 25
    DISCONNECTED = 26

    @cached_property
    def label(self) -> str:
        """The name the product documents and the dashboard show."""
        return _INFO[self][0]

    @cached_property
    def stage(self) -> Stage:
        return _INFO[self][1]

    @cached_property
    def is_error(self) -> bool:
        return _INFO[self][2]

    @cached_property
    def ends_session(self) -> bool:
        """A session that reached this status is over (until a new one starts)."""
        return self.is_error or self.stage is Stage.END or self is Status.DEAUTHORIZED

    @cached_property
    def syncing(self) -> bool:
        """A sync or refresh runs: a stage after authorization, not ended. 9 Authorized waits
        for the first sync, so it is not one."""
        return self.stage not in (Stage.AUTHORIZATION, Stage.END) and not self.ends_session

    @property
    def description(self) -> str:
        return _INFO[self][3]


_A, _L, _D, _S, _P, _E = (
    Stage.AUTHORIZATION,
    Stage.LOADING,
    Stage.DEDUPLICATION,
    Stage.STRUCTURING,
    Stage.PROCESSING,
    Stage.END,
)

_INFO: dict[Status, tuple[str, Stage, bool, str]] = {
    Status.LOADING: ("Loading", _L, False, "Data from the app is loading to the datalake"),
    Status.AUTHORIZATION: ("Authorization", _A, False, "The user is logging in to the app"),
    Status.ERROR_IN_AUTHORIZATION: (
        "Error in Authorization",
        _A,
        True,
        "Invalid credentials or an incomplete authorization",
    ),
    Status.DEAUTHORIZED: (
        "Deauthorized",
        _A,
        False,
        "The app's connection ended; the user needs to reconnect",
    ),
    Status.AUTHORIZED: ("Authorized", _A, False, "Authorization is completed"),
    Status.LOADING_ERROR: ("Loading Error", _L, True, "Error while loading data"),
    Status.LOADED: ("Loaded", _L, False, "Data saved in the datalake"),
    Status.STRUCTURING: ("Structuring", _S, False, "Data is loaded and being structured"),
    Status.STRUCTURING_ERROR: ("Structuring Error", _S, True, "Data structuring was interrupted"),
    Status.STRUCTURED: ("Structured", _S, False, "Data was structured without errors"),
    Status.PROCESSING: ("Processing", _P, False, "Data is structured and being processed"),
    Status.PROCESSING_ERROR: ("Processing error", _P, True, "A processing substage failed"),
    Status.PROCESSED: ("Processed", _P, False, "All processing substages completed"),
    Status.SYNCED: ("Synced", _E, False, "All the data from the app is connected and synced"),
    Status.AUTHORIZATION_TIMEDOUT: (
        "Authorization timedout",
        _A,
        True,
        "Authorization was started but not completed in time",
    ),
    Status.DEDUPLICATION: ("Deduplication", _D, False, "Deduplication of a predefined app"),
    Status.DEDUPLICATION_ERROR: ("Deduplication Error", _D, True, "Error in deduplication"),
    Status.TIMED_OUT: (
        "Timed Out",
        _E,
        True,
        "The session did not change status within the defined period",
    ),
    Status.WAITING_FOR_WEBHOOK: (
        "Waiting For Webhook",
        _L,
        False,
        "Data comes from an app aggregator; waiting for its webhook",
    ),
    Status.DISCONNECTED: ("Disconnected", _E, False, "The app was disconnected"),
}
