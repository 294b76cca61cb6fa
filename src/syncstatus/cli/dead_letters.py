"""`syncstatus dead-letters list|show|redrive`: triage from a terminal.

Like `history` and `explain`, it works on the database through the application `build` wires,
so it needs no API and no token; a redrive is queued there and the running service's redrive
relay publishes it, exactly as one asked for through the API.
"""

from __future__ import annotations

import base64
import getpass
import json
from dataclasses import asdict
from datetime import UTC, datetime

import typer

from syncstatus.bootstrap import Application, build
from syncstatus.service.dead_letters import DeadLetterNotFound, NotRedrivable, Verdict
from syncstatus.settings import Settings
from syncstatus.statemachine.connection import Outcome
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE
from syncstatus.store.dead_letters import SORTABLE, DeadLetterDetail, DeadLetterFilter

app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show and redrive them.")

CONNECTION = typer.Option(None, "--connection", help="Only this connection's.")
APP = typer.Option(None, "--app", help="Only this app's.")
PRODUCER = typer.Option(None, "--producer", help="Only this producer's.")
REASON = typer.Option(None, "--reason", help="Only those refused for this reason.")
TOPIC = typer.Option(None, "--topic", help="Only those that came in on this topic.")
SINCE = typer.Option(None, "--since", help="Refused at or after (ISO 8601; no zone: UTC).")
UNTIL = typer.Option(None, "--until", help="Refused before (ISO 8601; no zone: UTC).")
REDRIVEN = typer.Option(
    None, "--redriven/--not-redriven", help="Only those redriven before, or never."
)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _filter(
    connection: str | None,
    app_: str | None,
    producer: str | None,
    reason: str | None,
    topic: str | None,
    since: str | None,
    until: str | None,
    redriven: bool | None,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        connection, app_, producer, reason, topic, _when(since), _when(until), redriven
    )


def _status(code: int | None) -> str:
    return "-" if code is None else f"{int(code)} {Status(code).label}"


@app.command("list")
def list_command(
    connection: str | None = CONNECTION,
    app_: str | None = APP,
    producer: str | None = PRODUCER,
    reason: str | None = REASON,
    topic: str | None = TOPIC,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    redriven: bool | None = REDRIVEN,
    sort: str = typer.Option("refused_at", help=f"One of {', '.join(SORTABLE)}."),
    ascending: bool = typer.Option(False, "--asc", help="Oldest (or smallest) first."),
    page: int = typer.Option(1, min=1),
    page_size: int = typer.Option(50, min=1, max=500),
) -> None:
    """Dead letters that match every filter given, newest first."""
    where = _filter(connection, app_, producer, reason, topic, since, until, redriven)
    application = build(Settings())
    try:
        found = application.dead_letters.list(
            where, sort, not ascending, page, page_size, scope=EVERY_WORKSPACE
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    finally:
        application.close()
    header = ("id", "refused at (UTC)", "reason", "producer", "connection", "event", "redriven")
    rows = [header] + [
        (
            str(d.id),
            f"{d.refused_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            d.reason,
            d.producer or "-",
            d.connection_id or "-",
            d.event_type or "-",
            f"{d.redrive_count}x, last by {d.redriven_by}" if d.redrive_count else "-",
        )
        for d in found.items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    typer.echo(f"{len(found.items)} of {found.total} (page {found.page})", err=True)


@app.command()
def show(
    dead_letter_id: int = typer.Argument(..., min=1),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """One dead letter whole: origin, headers, the decoded event, the bytes as base64."""
    application = build(Settings())
    found = application.dead_letters.show(dead_letter_id, scope=EVERY_WORKSPACE)
    application.close()
    if found is None:
        typer.echo(f"no dead letter {dead_letter_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(_as_json(found), default=str) if as_json else _text(found))


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _as_json(d: DeadLetterDetail) -> dict:
    origin = d.origin
    return {
        **asdict(d.summary),
        "origin": None
        if origin is None
        else {
            "topic": origin.topic,
            "partition": origin.partition,
            "offset": origin.offset,
            "key_base64": _b64(origin.key),
            "value_base64": _b64(origin.value),
            "headers": [[name, _b64(value)] for name, value in origin.headers],
        },
        "event": d.event,
        "redrives": [asdict(r) for r in d.redrives],
    }


def _text(d: DeadLetterDetail) -> str:
    s, origin = d.summary, d.origin
    lines = [
        f"dead letter {s.id}: {s.reason} at {s.refused_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"  detail:      {s.detail}",
        f"  connection:  {s.connection_id or '-'}   app: {s.app or '-'}   "
        f"producer: {s.producer or '-'}",
        f"  event:       {s.event_type or '-'} {s.event_id or ''}  (in {_status(s.from_status)})",
    ]
    if origin is None:
        lines.append("  origin:      none (the service raised the event itself)")
    else:
        lines.append(f"  origin:      {origin.topic} [{origin.partition}] @ {origin.offset}")
        lines.append(f"  key:         {origin.key!r}")
        lines += [f"  header:      {name}: {value!r}" for name, value in origin.headers]
        lines.append(f"  value:       {_b64(origin.value) or 'none (a tombstone)'}")
    if d.event is not None:
        lines.append(f"  decoded:     {json.dumps(d.event, default=str)}")
    lines += [
        f"  redrive:     by {r.requested_by} at {r.requested_at:%Y-%m-%d %H:%M:%S}, "
        + (f"published {r.published_at:%H:%M:%S}" if r.published_at else "not published yet")
        for r in d.redrives
    ]
    return "\n".join(lines)


@app.command()
def redrive(
    dead_letter_id: int | None = typer.Argument(None, min=1, help="One dead letter, or filters."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what it would do; change nothing."),
    limit: int = typer.Option(100, min=1, max=1000, help="Most dead letters a filter picks."),
    by: str | None = typer.Option(None, help="Who asks (default: cli:$USER)."),
    connection: str | None = CONNECTION,
    app_: str | None = APP,
    producer: str | None = PRODUCER,
    reason: str | None = REASON,
    topic: str | None = TOPIC,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    redriven: bool | None = REDRIVEN,
) -> None:
    """Publish dead letters again on their input topics (the running service's redrive relay
    sends them), one by id or the oldest `--limit` that match the filters; `--dry-run` says
    what each would do now instead. Exits 1 if one cannot be redriven."""
    where = _filter(connection, app_, producer, reason, topic, since, until, redriven)
    if dead_letter_id is None and where == DeadLetterFilter():
        raise typer.BadParameter("give a dead letter id or at least one filter")
    application = build(Settings())
    try:
        ids = (
            [dead_letter_id]
            if dead_letter_id is not None
            else application.dead_letters.ids(where, limit, scope=EVERY_WORKSPACE)
        )
        failed = _dry_run(application, ids) if dry_run else _redrive(application, ids, by)
    except DeadLetterNotFound as missing:
        typer.echo(f"no dead letter {missing}", err=True)
        raise typer.Exit(1) from None
    finally:
        application.close()
    raise typer.Exit(1 if failed else 0)


def _dry_run(application: Application, ids: list[int]) -> bool:
    failed = False
    for dead_letter_id in ids:
        try:
            verdict = application.triage.dry_run(dead_letter_id, scope=EVERY_WORKSPACE)
            typer.echo(verdict_text(verdict))
        except NotRedrivable as why:
            typer.echo(f"#{dead_letter_id} cannot be redriven: {why}")
            failed = True
    return failed


def _redrive(application: Application, ids: list[int], by: str | None) -> bool:
    who = by or f"cli:{_user()}"
    report = application.triage.redrive(ids, who, scope=EVERY_WORKSPACE)
    for dead_letter_id in report.requested:
        typer.echo(f"#{dead_letter_id} queued for redrive by {who}")
    for dead_letter_id, why in report.refused.items():
        typer.echo(f"#{dead_letter_id} cannot be redriven: {why}")
    return bool(report.refused) or not report.requested


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


WOULD = {
    Outcome.APPLIED: "would apply",
    Outcome.PARKED: "would park",
    Outcome.REFUSED: "would be refused again",
    Outcome.DUPLICATE: "would be a duplicate",
}


def verdict_text(v: Verdict) -> str:
    head = f"#{v.dead_letter_id} {WOULD[v.outcome]}"
    if v.outcome is Outcome.APPLIED:
        change = (
            f"{_status(v.from_status)} -> {_status(v.to_status)}"
            if v.to_status is not None
            else "no status change (an account event)"
        )
        return f"{head}: {change}" + (f", releasing {v.releases} parked" if v.releases else "")
    if v.outcome is Outcome.REFUSED:
        return f"{head}: {v.reason}: {v.detail}"
    return f"{head}: {v.detail}"
