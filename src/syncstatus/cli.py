"""The `syncstatus` command: parses arguments and wires; the work happens elsewhere."""

from __future__ import annotations

from pathlib import Path

import typer

from syncstatus import docs
from syncstatus.bootstrap import build
from syncstatus.settings import Settings
from syncstatus.statemachine.statuses import Status
from syncstatus.store.database import create_engine, migrate

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _status_text(code: int | None) -> str:
    return "-" if code is None else f"{code} {Status(code).label}"


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
    rows = application.queries.history(connection_id)
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
            r.error or r.substage or "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@app.command()
def diagram() -> None:
    """Print the status machine as a Mermaid diagram."""
    typer.echo(docs.mermaid(), nl=False)


@app.command("docs")
def docs_command(
    output: Path = typer.Option(Path("docs/statuses.md"), help="Where to write the page."),
) -> None:
    """Regenerate the statuses and transitions page from the machine."""
    output.write_text(docs.statuses_page())
    typer.echo(f"wrote {output}")
