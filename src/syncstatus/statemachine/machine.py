"""The status machine: the one declaration of which event moves a connection from which status.

Everything else that knows a transition (the hot-path lookup table, the docs' table, the Mermaid
diagram, `GET /statuses`) is derived from `ConnectionStatusMachine` by `statemachine.table`.
"""

from __future__ import annotations

from dataclasses import dataclass

from statemachine import State, StateMachine

from syncstatus.statemachine.events import ALL_SUBSTAGES, Substage
from syncstatus.statemachine.statuses import Stage, Status

NEW = 0
"""State value of a connection that has no status yet (never seen)."""

PER_APP_GUARDS = frozenset({"deduplication_required"})
"""Guards that depend only on the connection's app, so what they refuse they refuse for good."""


@dataclass(frozen=True, slots=True)
class GuardContext:
    """What the guards need to know beyond the current status."""

    deduplication_required: bool = False
    completed_substages: frozenset[Substage] = frozenset()
    timed_out_from: Status | None = None
    holds_credentials: bool = False

    @property
    def resume_stage(self) -> Stage:
        """The latest stage a session may start again after it timed out (status 23).

        It is the stage whose work was pending when the clock ran out: a session stuck at
        Authorized or Waiting For Webhook was waiting for loading, one stuck at Structured was
        waiting for processing. Loaded waits for deduplication on the apps that need it.
        """
        stuck = self.timed_out_from
        if stuck is Status.LOADED:
            return Stage.DEDUPLICATION if self.deduplication_required else Stage.STRUCTURING
        return _RESUME_STAGE.get(stuck, Stage.LOADING)


_RESUME_STAGE = {
    Status.AUTHORIZED: Stage.LOADING,
    Status.WAITING_FOR_WEBHOOK: Stage.LOADING,
    Status.LOADING: Stage.LOADING,
    Status.DEDUPLICATION: Stage.DEDUPLICATION,
    Status.STRUCTURING: Stage.STRUCTURING,
    Status.STRUCTURED: Stage.PROCESSING,
    Status.PROCESSING: Stage.PROCESSING,
    Status.PROCESSED: Stage.PROCESSING,
}


class ConnectionStatusMachine(StateMachine):
    """Statuses 2–26 of a data connection and the events that move it.

    `StateMachine` (not `StateChart`) so that an event with no allowed transition raises
    `TransitionNotAllowed` instead of being ignored. Guards receive the `ctx` keyword
    (a `GuardContext`) passed to `send`.
    """

    new = State("New connection", initial=True, value=NEW)
    loading = State(Status.LOADING.label, value=Status.LOADING)
    authorization = State(Status.AUTHORIZATION.label, value=Status.AUTHORIZATION)
    error_in_authorization = State(
        Status.ERROR_IN_AUTHORIZATION.label, value=Status.ERROR_IN_AUTHORIZATION
    )
    deauthorized_state = State(Status.DEAUTHORIZED.label, value=Status.DEAUTHORIZED)
    authorized = State(Status.AUTHORIZED.label, value=Status.AUTHORIZED)
    loading_error = State(Status.LOADING_ERROR.label, value=Status.LOADING_ERROR)
    loaded = State(Status.LOADED.label, value=Status.LOADED)
    structuring = State(Status.STRUCTURING.label, value=Status.STRUCTURING)
    structuring_error = State(Status.STRUCTURING_ERROR.label, value=Status.STRUCTURING_ERROR)
    structured = State(Status.STRUCTURED.label, value=Status.STRUCTURED)
    processing = State(Status.PROCESSING.label, value=Status.PROCESSING)
    processing_error = State(Status.PROCESSING_ERROR.label, value=Status.PROCESSING_ERROR)
    processed = State(Status.PROCESSED.label, value=Status.PROCESSED)
    synced = State(Status.SYNCED.label, value=Status.SYNCED)
    authorization_timedout = State(
        Status.AUTHORIZATION_TIMEDOUT.label, value=Status.AUTHORIZATION_TIMEDOUT
    )
    deduplication = State(Status.DEDUPLICATION.label, value=Status.DEDUPLICATION)
    deduplication_error = State(Status.DEDUPLICATION_ERROR.label, value=Status.DEDUPLICATION_ERROR)
    timed_out = State(Status.TIMED_OUT.label, value=Status.TIMED_OUT)
    waiting_for_webhook = State(Status.WAITING_FOR_WEBHOOK.label, value=Status.WAITING_FOR_WEBHOOK)
    disconnected_state = State(Status.DISCONNECTED.label, value=Status.DISCONNECTED)

    authorization_started = authorization.from_.any()
    authorization_succeeded = authorization.to(authorized)
    authorization_failed = authorization.to(error_in_authorization)
    authorization_timed_out = authorization.to(authorization_timedout)
    _not_disconnected = (
        loading, authorization, error_in_authorization, deauthorized_state, authorized,
        loading_error, loaded, structuring, structuring_error, structured, processing,
        processing_error, processed, synced, authorization_timedout, deduplication,
        deduplication_error, timed_out, waiting_for_webhook,
    )  # fmt: skip
    deauthorized = deauthorized_state.from_(*_not_disconnected)
    disconnected = disconnected_state.from_(*_not_disconnected, disconnected_state)

    webhook_pending = (
        authorized.to(waiting_for_webhook)
        | loading_error.to(waiting_for_webhook)
        | synced.to(waiting_for_webhook)
        | timed_out.to(waiting_for_webhook, cond="resumes_loading")
        | error_in_authorization.to(waiting_for_webhook, cond="holds_credentials")
        | authorization_timedout.to(waiting_for_webhook, cond="holds_credentials")
    )
    webhook_received = waiting_for_webhook.to(loading)
    webhook_failed = waiting_for_webhook.to(loading_error)

    loading_started = (
        authorized.to(loading)
        | loading_error.to(loading)
        | synced.to(loading)
        | timed_out.to(loading, cond="resumes_loading")
        | error_in_authorization.to(loading, cond="holds_credentials")
        | authorization_timedout.to(loading, cond="holds_credentials")
    )
    loading_completed = loading.to(loaded)
    loading_failed = loading.to(loading_error)

    deduplication_started = (
        loaded.to(deduplication, cond="deduplication_required")
        | deduplication_error.to(deduplication, cond="deduplication_required")
        | timed_out.to(deduplication, cond=["deduplication_required", "resumes_deduplication"])
    )
    deduplication_failed = deduplication.to(deduplication_error)

    structuring_started = (
        loaded.to(structuring, unless="deduplication_required")
        | deduplication.to(structuring)
        | structuring_error.to(structuring)
        | timed_out.to(structuring, cond="resumes_structuring")
    )
    structuring_completed = structuring.to(structured)
    structuring_failed = structuring.to(structuring_error)

    processing_started = (
        structured.to(processing)
        | processing_error.to(processing)
        | timed_out.to(processing, cond="resumes_processing")
    )
    processing_substage_completed = processing.to(processing)
    processing_failed = processing.to(processing_error)
    processing_completed = processing.to(processed, cond="all_substages_completed")
    sync_completed = processed.to(synced)

    stage_timed_out = timed_out.from_(
        loading,
        authorized,
        loaded,
        structuring,
        structured,
        processing,
        processed,
        deduplication,
        waiting_for_webhook,
    )

    connection_deleted = disconnected_state.from_(*_not_disconnected, disconnected_state)

    @staticmethod
    def holds_credentials(ctx: GuardContext) -> bool:
        """A re-authorization failed or was abandoned, but the earlier credentials still work,
        so the connection may sync with them."""
        return ctx.holds_credentials

    @staticmethod
    def deduplication_required(ctx: GuardContext) -> bool:
        """The app is one of the predefined apps whose data must be deduplicated."""
        return ctx.deduplication_required

    @staticmethod
    def all_substages_completed(ctx: GuardContext) -> bool:
        """All five processing substages completed in this processing run."""
        return ctx.completed_substages >= ALL_SUBSTAGES

    @staticmethod
    def resumes_loading(ctx: GuardContext) -> bool:
        """After a timeout, loading may start again only if the session had not passed it."""
        return ctx.resume_stage >= Stage.LOADING

    @staticmethod
    def resumes_deduplication(ctx: GuardContext) -> bool:
        return ctx.resume_stage >= Stage.DEDUPLICATION

    @staticmethod
    def resumes_structuring(ctx: GuardContext) -> bool:
        return ctx.resume_stage >= Stage.STRUCTURING

    @staticmethod
    def resumes_processing(ctx: GuardContext) -> bool:
        return ctx.resume_stage >= Stage.PROCESSING
