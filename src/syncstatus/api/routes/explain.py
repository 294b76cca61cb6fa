"""Why a connection is stuck: what can move it, the clock's deadline, what is parked, what was
refused, and whether its data can be extracted. Read-only, like the other GETs."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from syncstatus.api.dependencies import CallerScope, CurrentApplication
from syncstatus.api.models import ErrorOut, StatusOut, status_out
from syncstatus.kafka import family_topics
from syncstatus.statemachine.events import EventFamily
from syncstatus.statemachine.explain import Explanation


class WaitingForOut(BaseModel):
    event_type: str
    family: str
    topic: str = Field(description="The input topic that carries the event's family.")
    target: StatusOut
    connection_wide: bool
    last_producer: str | None = Field(
        description="The producer that last sent an event of this family to the connection."
    )


class BlockedOut(BaseModel):
    event_type: str
    target: StatusOut
    guard: str = Field(description="The machine's guard that refuses the route now.")
    for_good: bool = Field(description="The guard depends only on the app: it never passes.")


class DeadlineOut(BaseModel):
    event_type: str
    at: datetime
    remaining_s: float = Field(description="Negative once due: the next sweep applies it.")


class ParkedOut(BaseModel):
    event_id: str
    event_type: str
    session_id: str
    parked_at: datetime
    age_s: float
    window_left_s: float


class RefusalOut(BaseModel):
    reason: str
    detail: str
    event_type: str | None
    event_id: str | None
    refused_at: datetime


class ExplainOut(BaseModel):
    connection_id: str
    status: StatusOut
    since: datetime
    waiting_for: list[WaitingForOut]
    blocked: list[BlockedOut]
    substages_left: list[str]
    deadline: DeadlineOut | None
    parked: list[ParkedOut]
    refusals: list[RefusalOut] = Field(description="The last dead letters, newest first.")
    can_extract: bool
    why_not: list[str]


def explain_out(explanation: Explanation, topics: dict[EventFamily, str]) -> ExplainOut:
    e = explanation
    return ExplainOut(
        connection_id=e.connection_id,
        status=status_out(int(e.status)),
        since=e.since,
        waiting_for=[
            WaitingForOut(
                event_type=w.event_type.value,
                family=w.family.value,
                topic=topics[w.family],
                target=status_out(int(w.target)),
                connection_wide=w.connection_wide,
                last_producer=w.last_producer,
            )
            for w in e.waiting_for
        ],
        blocked=[
            BlockedOut(
                event_type=b.event_type.value,
                target=status_out(int(b.target)),
                guard=b.guard,
                for_good=b.for_good,
            )
            for b in e.blocked
        ],
        substages_left=[s.value for s in e.substages_left],
        deadline=None
        if e.deadline is None
        else DeadlineOut(
            event_type=e.deadline.event_type.value,
            at=e.deadline.at,
            remaining_s=e.deadline.remaining_s,
        ),
        parked=[
            ParkedOut(
                event_id=str(p.event_id),
                event_type=p.event_type.value,
                session_id=p.session_id,
                parked_at=p.parked_at,
                age_s=p.age_s,
                window_left_s=p.window_left_s,
            )
            for p in e.parked
        ],
        refusals=[
            RefusalOut(
                reason=r.reason,
                detail=r.detail,
                event_type=r.event_type,
                event_id=None if r.event_id is None else str(r.event_id),
                refused_at=r.refused_at,
            )
            for r in e.refusals
        ],
        can_extract=e.can_extract,
        why_not=e.why_not,
    )


def build_router(Id: Any) -> APIRouter:
    """The explain route, with `Id` (see `id_path`) as the type of a connection id."""
    router = APIRouter(tags=["connections"], responses={404: {"model": ErrorOut}})

    @router.get("/connections/{connection_id}/explain", response_model=ExplainOut)
    def explain(
        connection_id: Id, application: CurrentApplication, scope: CallerScope
    ) -> ExplainOut:
        """Why the connection is where it is, derived from the machine, the policy and what
        the engine stored; answers for a deleted connection too."""
        explanation = application.explain.explain(connection_id, scope=scope)
        if explanation is None:
            raise HTTPException(404, f"no connection {connection_id}")
        return explain_out(explanation, family_topics(application.settings))

    return router
