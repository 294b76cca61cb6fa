"""The status table and the transitions, as the dashboard's legend and for clients to read."""

from fastapi import APIRouter

from syncstatus.api.models import StatusesOut, StatusInfoOut, TransitionOut, status_out
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import transition_rows

router = APIRouter(tags=["statuses"])


@router.get("/statuses", response_model=StatusesOut)
def statuses() -> StatusesOut:
    """The status table and the transitions, generated from the state machine."""
    return StatusesOut(
        statuses=[
            StatusInfoOut(**status_out(int(s)).model_dump(), description=s.description)
            for s in Status
        ],
        transitions=[
            TransitionOut(
                event_type=e.value,
                sources=[None if s is None else int(s) for s in sources],
                target=int(target),
                guard=guard,
            )
            for e, sources, target, guard in transition_rows()
        ],
    )
