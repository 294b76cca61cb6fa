"""Dead-letter triage: list and show dead letters, the original bytes, the producers'
scorecard, and redrives (one, or a filtered set), each with a dry run that says what the
message would do now and changes nothing.

A redrive publishes the original key and bytes again on the topic they came in on (the
service's redrive relay does, after the request commits), so the message goes through the
consumer and its idempotency like any other; the dead letter records who asked and when.
"""

import base64
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from syncstatus.api.dependencies import (
    TOKEN_RESPONSES,
    Admin,
    CallerScope,
    CurrentApplication,
    ProducerDataReader,
)
from syncstatus.api.models import (
    Bucket,
    DeadLetterDetailOut,
    DeadLetterOut,
    DeadLetterPageOut,
    DeadLetterSort,
    ErrorOut,
    HeaderOut,
    Order,
    RedriveLineOut,
    RedriveOut,
    RefusedRedriveOut,
    ScorecardOut,
    ScoreLineOut,
    StatusRef,
    VerdictOut,
)
from syncstatus.service.dead_letters import (
    DeadLetterNotFound,
    NotRedrivable,
    RedriveReport,
    Verdict,
)
from syncstatus.statemachine.statuses import Status
from syncstatus.store.dead_letters import (
    DeadLetterDetail,
    DeadLetterFilter,
    DeadLetterSummary,
    ScoreLine,
)

router = APIRouter(tags=["dead letters"])

DeadLetterId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
Text = Annotated[str | None, Query(max_length=256, pattern=PRINTABLE)]
MAX_REDRIVE = 1000
WRITE_RESPONSES = {
    **TOKEN_RESPONSES,
    404: {"model": ErrorOut, "description": "No such dead letter."},
    409: {"model": ErrorOut, "description": "It cannot be redriven, with the reason."},
}


def _utc(at: datetime | None) -> datetime | None:
    """A time without a zone is read as UTC, as every time the service stores is."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def dead_letter_filter(
    connection_id: Text = None,
    app: Text = None,
    producer: Text = None,
    reason: Text = None,
    topic: Text = None,
    since: Annotated[datetime | None, Query(description="Refused at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Refused before.")] = None,
    redriven: Annotated[bool | None, Query(description="Redriven at least once, or never.")] = (
        None
    ),
) -> DeadLetterFilter:
    return DeadLetterFilter(
        connection_id, app, producer, reason, topic, _utc(since), _utc(until), redriven
    )


Filter = Annotated[DeadLetterFilter, Depends(dead_letter_filter)]


@router.get("/dead-letters", response_model=DeadLetterPageOut)
def list_dead_letters(
    application: CurrentApplication,
    scope: CallerScope,
    where: Filter,
    sort: DeadLetterSort = DeadLetterSort.refused_at,
    order: Order = Order.desc,
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadLetterPageOut:
    """Dead letters that match every filter given, newest first unless sorted otherwise. A
    token scoped to a workspace sees those of its connections alone (none of a connection
    never stored)."""
    found = application.dead_letters.list(
        where, sort.value, order is Order.desc, page, page_size, scope=scope
    )
    return DeadLetterPageOut(
        items=[dead_letter_out(d) for d in found.items],
        total=found.total,
        page=found.page,
        page_size=found.page_size,
    )


@router.get("/dead-letters/scorecard", response_model=ScorecardOut)
def scorecard(
    application: CurrentApplication,
    scope: CallerScope,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = Bucket.hour,
    producer: Text = None,
) -> ScorecardOut:
    """Refusals per producer and reason, in total and per hour or day (UTC), refused in
    [since, until): by default the last 24 hours."""
    end = _utc(until) or datetime.now(UTC)
    card = application.dead_letters.scorecard(
        _utc(since) or end - timedelta(days=1), end, bucket.value, producer, scope=scope
    )
    return ScorecardOut(
        since=card.since,
        until=card.until,
        bucket=bucket,
        totals=[score_line_out(line) for line in card.totals],
        series=[score_line_out(line) for line in card.series],
    )


@router.get(
    "/dead-letters/{dead_letter_id}",
    response_model=DeadLetterDetailOut,
    responses={**TOKEN_RESPONSES, 404: {"model": ErrorOut}},
)
def dead_letter(
    dead_letter_id: DeadLetterId,
    who: ProducerDataReader,
    application: CurrentApplication,
    scope: CallerScope,
) -> DeadLetterDetailOut:
    """One dead letter whole: where it came from, its headers, the decoded event when it
    decoded, the bytes as base64, and its redrives. Needs a token even where reads are
    public: it is the producer's data."""
    found = application.dead_letters.show(dead_letter_id, scope=scope)
    if found is None:
        raise HTTPException(404, f"no dead letter {dead_letter_id}")
    return dead_letter_detail_out(found)


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
    dead_letter_id: DeadLetterId,
    who: ProducerDataReader,
    application: CurrentApplication,
    scope: CallerScope,
) -> Response:
    """The refused message's value, byte for byte: the dead-letter topic carries a
    too-large one without it (header `dead_letter_id`). Needs a token even where reads are
    public: it is the producer's data."""
    original = application.dead_letters.original(dead_letter_id, scope=scope)
    if original is None:
        raise HTTPException(404, f"no message kept for dead letter {dead_letter_id}")
    return Response(original, media_type="application/octet-stream")


@router.post(
    "/dead-letters/{dead_letter_id}/redrive",
    response_model=RedriveOut,
    status_code=202,
    responses={200: {"model": RedriveOut, "description": "A dry run."}, **WRITE_RESPONSES},
)
def redrive(
    dead_letter_id: DeadLetterId,
    who: Admin,
    application: CurrentApplication,
    scope: CallerScope,
    response: Response,
    dry_run: bool = False,
) -> RedriveOut:
    """Publish the message again on its input topic (202, queued), or with `dry_run` say
    what it would do now (200): apply (from → to), park, be refused again (why), or be a
    duplicate (this dead letter's redrive was already taken)."""
    triage = application.triage
    try:
        if dry_run:
            response.status_code = 200
            return _dry_run_out([triage.dry_run(dead_letter_id, scope=scope)])
        report = triage.redrive([dead_letter_id], who, scope=scope)
        if report.refused:
            raise NotRedrivable(report.refused[dead_letter_id])
    except DeadLetterNotFound:
        raise HTTPException(404, f"no dead letter {dead_letter_id}") from None
    except NotRedrivable as why:
        detail = f"dead letter {dead_letter_id} cannot be redriven: {why}"
        raise HTTPException(409, detail) from None
    return redrive_out(report)


@router.post(
    "/dead-letters/redrive",
    response_model=RedriveOut,
    status_code=202,
    responses={200: {"model": RedriveOut, "description": "A dry run."}, **TOKEN_RESPONSES},
)
def redrive_matching(
    where: Filter,
    who: Admin,
    application: CurrentApplication,
    scope: CallerScope,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_REDRIVE)] = 100,
    dry_run: bool = False,
) -> RedriveOut:
    """The oldest `limit` dead letters that match the filters (at least one), redriven, or
    with `dry_run` what each would do now, each judged alone on what is stored now.
    `redriven=false` leaves out those redriven before."""
    if where == DeadLetterFilter():
        raise HTTPException(400, "name at least one filter; an unfiltered redrive is refused")
    ids = application.dead_letters.ids(where, limit, scope=scope)
    if not dry_run:
        return redrive_out(application.triage.redrive(ids, who, scope=scope))
    response.status_code = 200
    verdicts, refused = [], []
    for dead_letter_id in ids:
        try:
            verdicts.append(application.triage.dry_run(dead_letter_id, scope=scope))
        except NotRedrivable as why:
            refused.append(RefusedRedriveOut(dead_letter_id=dead_letter_id, why=str(why)))
    return _dry_run_out(verdicts, refused)


def _dry_run_out(
    verdicts: list[Verdict], refused: list[RefusedRedriveOut] | None = None
) -> RedriveOut:
    return RedriveOut(
        dry_run=True,
        requested=[],
        refused=refused or [],
        verdicts=[verdict_out(v) for v in verdicts],
    )


def _status_ref(code: int | None) -> StatusRef | None:
    return None if code is None else StatusRef(code=int(code), name=Status(code).label)


def dead_letter_out(d: DeadLetterSummary) -> DeadLetterOut:
    fields = asdict(d)
    fields["event_id"] = None if d.event_id is None else str(d.event_id)
    fields["from_status"] = _status_ref(d.from_status)
    return DeadLetterOut(**fields)


def _base64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def dead_letter_detail_out(d: DeadLetterDetail) -> DeadLetterDetailOut:
    origin = d.origin
    return DeadLetterDetailOut(
        **dead_letter_out(d.summary).model_dump(),
        partition=None if origin is None else origin.partition,
        offset=None if origin is None else origin.offset,
        key_base64=None if origin is None else _base64(origin.key),
        value_base64=None if origin is None else _base64(origin.value),
        headers=[
            HeaderOut(name=n, value=_text(v), value_base64=_base64(v) or "") for n, v in d.headers
        ],
        event=d.event,
        redrives=[RedriveLineOut(**asdict(r)) for r in d.redrives],
    )


def verdict_out(v: Verdict) -> VerdictOut:
    return VerdictOut(
        dead_letter_id=v.dead_letter_id,
        outcome=v.outcome.value,
        from_status=_status_ref(v.from_status),
        to_status=_status_ref(v.to_status),
        reason=v.reason,
        detail=v.detail,
        releases=v.releases,
    )


def redrive_out(report: RedriveReport) -> RedriveOut:
    return RedriveOut(
        dry_run=False,
        requested=report.requested,
        refused=[RefusedRedriveOut(dead_letter_id=i, why=w) for i, w in report.refused.items()],
        verdicts=[],
    )


def score_line_out(line: ScoreLine) -> ScoreLineOut:
    return ScoreLineOut(**asdict(line))
