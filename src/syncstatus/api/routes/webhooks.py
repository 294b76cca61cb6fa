"""Webhook subscriptions (admin tokens): create one (its secret is shown once), list, delete,
resume one that failed for too long, redeliver, and read its delivery log.

The service's webhook relay (`syncstatus run`) does the delivering; the API only records what
is asked, so it needs neither the receivers nor Kafka. A token confined to a workspace sees
and makes subscriptions of that workspace alone; another's is 404 to it.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from syncstatus.api.dependencies import (
    TOKEN_RESPONSES,
    Admin,
    CallerScope,
    CurrentApplication,
    matches_id_rule,
)
from syncstatus.api.models import ErrorOut
from syncstatus.producers.webhook_delivery import new_secret, target_problem
from syncstatus.schemas.changes import ChangeFilter, FeedPosition
from syncstatus.store.webhooks import (
    Conflict,
    LoggedAttempt,
    NotFound,
    Redelivery,
    Subscription,
)

MAX_LOG = 500
Text = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]


class WebhookIn(BaseModel):
    url: str = Field(
        max_length=2048,
        pattern=r"^[^\x00-\x20\x7f]+$",
        description="Where to POST: https (http only to a loopback address, where "
        "SYNCSTATUS_WEBHOOK_ALLOW_HTTP_LOOPBACK allows it).",
    )
    description: Text | None = None
    workspace: Text | None = Field(
        None, description="Only this workspace's records (a scoped token: its own, always)."
    )
    apps: list[Text] | None = Field(None, max_length=50, description="Only these apps'.")
    statuses: list[int] | None = Field(
        None, max_length=30, description="Only records to these statuses (`to_code`)."
    )
    errors_only: bool = Field(False, description="Only records to an error status.")
    after: str | None = Field(
        None,
        max_length=64,
        description="Deliver the records after this cursor (`0-0`: every record ever "
        "recorded); by default, those from now on.",
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    workspace: str | None
    apps: list[str] | None
    statuses: list[int] | None
    errors_only: bool
    state: str = Field(description="active, or failing: paused until resumed.")
    paused_at: datetime | None
    pause_reason: str | None
    created_by: str
    created_at: datetime
    position: str = Field(description="The cursor of the last record delivered or passed over.")
    attempts: int = Field(description="Failed attempts in a row at the next record.")
    failing_since: datetime | None
    retry_at: datetime | None = Field(description="When the next record is tried again.")
    delivered_at: datetime | None


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="The signing secret (`whsec_` + base64), shown this once: keep it to "
        "verify deliveries (docs/contract.md, Webhooks)."
    )


class WebhooksOut(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="The `webhook-id` header.")
    connection_id: str
    sequence: int
    attempt: int = Field(description="1 for the first attempt at this record, then 2, 3...")
    attempted_at: datetime
    outcome: str = Field(description="delivered, rejected, timeout or unreachable.")
    status_code: int | None
    seconds: float = Field(description="From sending the request to the receiver's answer.")
    error: str | None
    redelivery: bool


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="Newest first.")
    before: int | None = Field(description="Ask with `before` for older entries; null: no more.")


class RedeliveryOut(BaseModel):
    id: int
    connection_id: str | None
    next_sequence: int | None
    last_sequence: int | None
    after: str | None = Field(description="A rewind: every record after this cursor again.")
    requested_by: str
    requested_at: datetime
    done_at: datetime | None


class RedeliveriesOut(BaseModel):
    redeliveries: list[RedeliveryOut] = Field(description="Newest first (the last 50).")


def webhook_out(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "url": s.url,
        "description": s.description,
        "workspace": s.where.workspace,
        "apps": None if s.where.apps is None else sorted(s.where.apps),
        "statuses": None if s.where.statuses is None else sorted(s.where.statuses),
        "errors_only": s.where.errors_only,
        "state": s.state,
        "paused_at": s.paused_at,
        "pause_reason": s.pause_reason,
        "created_by": s.created_by,
        "created_at": s.created_at,
        "position": str(s.position),
        "attempts": s.attempts,
        "failing_since": s.failing_since,
        "retry_at": s.retry_at,
        "delivered_at": s.delivered_at,
    }


def delivery_out(logged: LoggedAttempt) -> DeliveryOut:
    a = logged.attempt
    return DeliveryOut(
        id=logged.id,
        message_id=a.message_id,
        connection_id=a.connection_id,
        sequence=a.sequence,
        attempt=a.attempt,
        attempted_at=a.attempted_at,
        outcome=a.outcome,
        status_code=a.status_code,
        seconds=a.seconds,
        error=a.error,
        redelivery=a.redelivery,
    )


def redelivery_out(r: Redelivery) -> RedeliveryOut:
    return RedeliveryOut(
        id=r.id,
        connection_id=r.connection_id,
        next_sequence=r.next_sequence,
        last_sequence=r.last_sequence,
        after=None if r.rewind is None else str(r.rewind),
        requested_by=r.requested_by,
        requested_at=r.requested_at,
        done_at=r.done_at,
    )


RESPONSES: dict[int | str, dict[str, Any]] = {
    **TOKEN_RESPONSES,
    400: {"model": ErrorOut, "description": "The request is not valid, with the reason."},
    404: {"model": ErrorOut, "description": "No such subscription (or connection)."},
}


def build_router(Id: Any) -> APIRouter:
    """The webhook routes, with `Id` (see `id_path`) as the type of connection ids."""
    router = APIRouter(tags=["webhooks"], responses=RESPONSES)

    @router.post("/webhooks", response_model=WebhookCreatedOut, status_code=201)
    def create(
        body: WebhookIn, who: Admin, scope: CallerScope, application: CurrentApplication
    ) -> dict[str, Any]:
        """Subscribe a URL to the status changes the filters want (every one without
        filters). Each is POSTed, signed as Standard Webhooks says, per connection in
        sequence order; the secret that signs them is in this answer only."""
        settings = application.settings
        problem = target_problem(body.url, settings.webhook_allow_http_loopback)
        if problem is not None:
            raise HTTPException(400, problem)
        workspace = body.workspace
        if workspace is not None:
            try:
                matches_id_rule(settings.id_pattern)(workspace)
            except ValueError:
                raise HTTPException(400, "the workspace is not an id syncstatus takes") from None
        if scope is not None:
            if workspace not in (None, scope):
                raise HTTPException(404, f"no workspace {workspace}")
            workspace = scope
        where = ChangeFilter.of(workspace, body.apps, body.statuses, body.errors_only)
        start = None if body.after is None else FeedPosition.parse(body.after)
        secret = new_secret()
        created = application.webhooks.create(body.url, body.description, where, who, secret, start)
        return {**webhook_out(created), "secret": secret}

    @router.get("/webhooks", response_model=WebhooksOut)
    def list_webhooks(
        _: Admin, scope: CallerScope, application: CurrentApplication
    ) -> dict[str, Any]:
        """Every subscription the caller may see, oldest first (never their secrets)."""
        return {"webhooks": [webhook_out(s) for s in application.webhooks.list(scope=scope)]}

    @router.get("/webhooks/{subscription_id}", response_model=WebhookOut)
    def show(
        subscription_id: uuid.UUID, _: Admin, scope: CallerScope, application: CurrentApplication
    ) -> dict[str, Any]:
        return webhook_out(_found(lambda: application.webhooks.get(subscription_id, scope=scope)))

    @router.delete("/webhooks/{subscription_id}", status_code=204)
    def delete(
        subscription_id: uuid.UUID, _: Admin, scope: CallerScope, application: CurrentApplication
    ) -> Response:
        """Stop delivering, and forget the subscription with its log."""
        _found(lambda: application.webhooks.delete(subscription_id, scope=scope))
        return Response(status_code=204)

    @router.post(
        "/webhooks/{subscription_id}/resume",
        response_model=WebhookOut,
        responses={409: {"model": ErrorOut, "description": "It is not failing."}},
    )
    def resume(
        subscription_id: uuid.UUID, _: Admin, scope: CallerScope, application: CurrentApplication
    ) -> dict[str, Any]:
        """Deliver again to a subscription paused as failing, starting with the record it
        failed on."""
        return webhook_out(
            _found(lambda: application.webhooks.resume(subscription_id, scope=scope))
        )

    @router.post(
        "/webhooks/{subscription_id}/redeliver",
        response_model=RedeliveryOut,
        status_code=202,
        responses={409: {"model": ErrorOut, "description": "Nothing to redeliver yet."}},
    )
    def redeliver(
        subscription_id: uuid.UUID,
        who: Admin,
        scope: CallerScope,
        application: CurrentApplication,
        connection_id: Annotated[
            Id | None, Query(description="Redeliver this connection's records...")
        ] = None,
        from_sequence: Annotated[
            int, Query(ge=1, le=2**31 - 1, description="...from this sequence on.")
        ] = 1,
        after: Annotated[
            str | None,
            Query(max_length=64, description="Or: every record after this cursor again."),
        ] = None,
    ) -> RedeliveryOut:
        """Deliver records again (queued: 202), before anything newer: a connection's from
        a sequence up to the last the subscription has passed, or every record after a
        cursor. Redeliveries carry the records' own `webhook-id`s."""
        webhooks = application.webhooks
        if (connection_id is None) == (after is None):
            raise HTTPException(400, "give either connection_id (and from_sequence) or after")
        if after is not None:
            position = FeedPosition.parse(after)
            queued = _found(lambda: webhooks.rewind(subscription_id, position, who, scope=scope))
        else:
            queued = _found(
                lambda: webhooks.redeliver_connection(
                    subscription_id, connection_id, from_sequence, who, scope=scope
                )
            )
        return redelivery_out(queued)

    @router.get("/webhooks/{subscription_id}/redeliveries", response_model=RedeliveriesOut)
    def redeliveries(
        subscription_id: uuid.UUID, _: Admin, scope: CallerScope, application: CurrentApplication
    ) -> RedeliveriesOut:
        found = _found(lambda: application.webhooks.redeliveries(subscription_id, scope=scope))
        return RedeliveriesOut(redeliveries=[redelivery_out(r) for r in found])

    @router.get("/webhooks/{subscription_id}/deliveries", response_model=DeliveriesOut)
    def deliveries(
        subscription_id: uuid.UUID,
        _: Admin,
        scope: CallerScope,
        application: CurrentApplication,
        limit: Annotated[int, Query(ge=1, le=MAX_LOG)] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> DeliveriesOut:
        """The delivery log: every attempt, newest first, with its status code, latency and
        error (kept `SYNCSTATUS_WEBHOOK_LOG_RETENTION_S`)."""
        found = _found(
            lambda: application.webhooks.deliveries(subscription_id, limit, before, scope=scope)
        )
        return DeliveriesOut(
            deliveries=[delivery_out(d) for d in found],
            before=found[-1].id if len(found) == limit else None,
        )

    return router


def _found(call: Any) -> Any:
    """The store's answer; its NotFound as 404, its Conflict as 409."""
    try:
        return call()
    except NotFound as error:
        raise HTTPException(404, str(error)) from None
    except Conflict as error:
        raise HTTPException(409, str(error)) from None
