"""The reference pages generated from the machine: `docs/statuses.md` is this module's output,
and a test fails when the committed file differs from it."""

from __future__ import annotations

import json

from syncstatus.settings import Settings
from syncstatus.statemachine.machine import ConnectionStatusMachine
from syncstatus.statemachine.policy import TIMEOUT_STATUSES
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS, transition_rows


def mermaid() -> str:
    """The machine as a Mermaid state diagram (rendered by python-statemachine itself)."""
    return f"{ConnectionStatusMachine:mermaid}".strip() + "\n"


def status_table() -> str:
    lines = ["| code | status | stage | error | times out | meaning |", "|---|---|---|---|---|---|"]
    for status in Status:
        times_out = "yes" if status in TIMEOUT_STATUSES or status is Status.AUTHORIZATION else ""
        lines.append(
            f"| {int(status)} | {status.label} | {status.stage.label} | "
            f"{'yes' if status.is_error else ''} | {times_out} | {status.description} |"
        )
    return "\n".join(lines) + "\n"


def transition_table() -> str:
    lines = ["| event type | from | to | guard |", "|---|---|---|---|"]
    for event, sources, target, guard in transition_rows():
        names = ", ".join("new connection" if s is None else str(int(s)) for s in sources)
        lines.append(f"| {event.value} | {names} | {int(target)} {target.label} | {guard} |")
    return "\n".join(lines) + "\n"


def guard_table() -> str:
    names = sorted({name for _, _, route in TRANSITIONS.rows() for name, _ in route.guards})
    lines = ["| guard | meaning |", "|---|---|"]
    for name in names:
        doc = " ".join((getattr(ConnectionStatusMachine, name).__doc__ or "").split())
        lines.append(f"| {name} | {doc} |")
    return "\n".join(lines) + "\n"


def statuses_page() -> str:
    return (
        "# Statuses and transitions\n\n"
        "Generated from `ConnectionStatusMachine` by `syncstatus docs`; do not edit by hand.\n\n"
        "## Statuses\n\n" + status_table() + "\n"
        "## Transitions\n\n"
        "An event not listed for the connection's current status is not applicable: it is\n"
        "parked while its session may still reach a status it applies from, and refused\n"
        "otherwise; events of a session the connection has left are refused whatever they\n"
        "are (see `docs/engine.md`).\n\n" + transition_table() + "\n"
        "## Guards\n\n" + guard_table() + "\n"
        "## Diagram\n\n```mermaid\n" + mermaid() + "```\n"
    )


def settings_table() -> str:
    """The README's settings table, from the settings model."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        if isinstance(default, set | dict):
            default = json.dumps(sorted(default) if isinstance(default, set) else default)
        lines.append(f"| `SYNCSTATUS_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


README_SETTINGS = ("<!-- settings:start -->\n", "<!-- settings:end -->\n")


def with_settings_table(readme: str) -> str:
    """The README with its settings table regenerated between the markers."""
    start, end = README_SETTINGS
    before, rest = readme.split(start)
    _, after = rest.split(end)
    return before + start + settings_table() + end + after
