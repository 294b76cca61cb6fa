"""The committed reference page must be what the machine generates today."""

from pathlib import Path

from syncstatus.devtools import docs
from syncstatus.statemachine.statuses import Status
from syncstatus.statemachine.table import TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]


def test_committed_statuses_page_matches_the_machine():
    committed = (ROOT / "docs" / "statuses.md").read_text()
    assert committed == docs.statuses_page(), "run `syncstatus docs` and commit docs/statuses.md"


def test_every_transition_appears_in_the_page():
    page = docs.transition_table()
    for event, _, route in TRANSITIONS.rows():
        assert f"| {event.value} |" in page
        assert f"{int(route.target)} {route.target.label}" in page


def test_the_diagram_names_every_status():
    diagram = docs.mermaid()
    assert diagram.startswith("stateDiagram-v2")
    for status in Status:
        assert f'"{status.label}"' in diagram


def test_the_readme_settings_table_matches_the_settings_model():
    readme = (ROOT / "README.md").read_text()
    assert readme == docs.with_settings_table(readme), "run `syncstatus docs` and commit"


def test_every_setting_has_a_description():
    assert "None |" not in docs.settings_table()


def test_the_contract_lists_the_current_fingerprint_of_every_schema():
    from syncstatus.schemas.codec import SingleObjectCodec

    contract = (ROOT / "docs" / "contract.md").read_text()
    for name in ("SessionEvent", "StatusChanged", "ConnectionCommand"):
        assert SingleObjectCodec(name).fingerprint.hex() in contract, name
