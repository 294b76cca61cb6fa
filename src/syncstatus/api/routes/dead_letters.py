"""The original of a dead letter, for an operator to inspect or replay it."""

from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import Response

from syncstatus.api.dependencies import TOKEN_RESPONSES, CurrentApplication, Operator
from syncstatus.api.models import ErrorOut

router = APIRouter(tags=["dead letters"])


@router.get(
    "/dead-letters/{dead_letter_id}/original",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
        **TOKEN_RESPONSES,
        404: {"model": ErrorOut, "description": "No such dead letter, or no message."},
    },
)
def dead_letter_original(
    dead_letter_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)],
    who: Operator,
    application: CurrentApplication,
) -> Response:
    """The refused message's value, byte for byte: the dead-letter topic carries a
    too-large one without it (header `dead_letter_id`). Needs the token: it is the
    producer's data."""
    original = application.dead_letters.original(dead_letter_id)
    if original is None:
        raise HTTPException(404, f"no message kept for dead letter {dead_letter_id}")
    return Response(original, media_type="application/octet-stream")
