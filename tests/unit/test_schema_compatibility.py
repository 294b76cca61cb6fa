"""The wire schemas: they parse, fingerprints follow the spec, the codec round-trips
and rejects bad input precisely, and every change stays backward AND forward
compatible with the last committed version (producers and consumers deploy apart)."""

import copy
import json
import shutil
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form

import syncstatus.schemas.codec as schemas
from syncstatus.schemas.codec import (
    DecodeError,
    DecodeFailure,
    SingleObjectCodec,
    UndecodableMessage,
    UnknownSchema,
    load_schema,
    schema_fingerprint,
)
from tests.helpers.avro_compat import (
    IncompatibleSchemas,
    check_compatible,
    history_problems,
    sample_records,
)
from tests.helpers.avro_fingerprint import canonical_form, crc64_avro, fingerprint_bytes

SCHEMA_DIR = Path(schemas.__file__).parent
SCHEMA_NAMES = sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


def raw_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))


def session_event(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": UUID("0b7e2f0c-3c4e-4c1e-9a52-5a4f0f3e9b11"),
        "type": "LOADING_STARTED",
        "connection_id": "conn-1",
        "session_id": "sess-1",
        "app": "shop",
        "occurred_at": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "producer": "loader",
        "error": None,
        "substage": None,
        "attributes": {},
        "accounts": None,
        "failure": None,
        "workspace_id": None,
    } | overrides


# --- the .avsc files -------------------------------------------------------------


def test_expected_schemas_exist() -> None:
    assert {"SessionEvent", "StatusChanged"} <= set(SCHEMA_NAMES)


def _undocumented(schema: Any, path: str) -> list[str]:
    if isinstance(schema, list):
        return [m for i, s in enumerate(schema) for m in _undocumented(s, f"{path}[{i}]")]
    if not isinstance(schema, dict):
        return []
    missing = []
    if schema.get("type") in ("record", "enum", "fixed") and not schema.get("doc"):
        missing.append(path)
    for field in schema.get("fields", []):
        if not field.get("doc"):
            missing.append(f"{path}.{field['name']}")
        missing += _undocumented(field["type"], f"{path}.{field['name']}")
    for key in ("type", "items", "values"):
        if isinstance(schema.get(key), dict | list):
            missing += _undocumented(schema[key], path)
    return missing


def _enums(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, list):
        return [e for s in schema for e in _enums(s)]
    if not isinstance(schema, dict):
        return []
    found = [schema] if schema.get("type") == "enum" else []
    for field in schema.get("fields", []):
        found += _enums(field["type"])
    for key in ("type", "items", "values"):
        found += _enums(schema.get(key))
    return found


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_avsc_parses_and_is_documented(name: str) -> None:
    raw = raw_schema(name)
    fastavro.parse_schema(raw)
    assert raw["namespace"] == "io.syncstatus" and raw["name"] == name
    assert load_schema(name)["name"] == f"io.syncstatus.{name}"
    assert _undocumented(raw, name) == []


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_enum_has_a_default_so_new_symbols_stay_readable(name: str) -> None:
    for enum in _enums(raw_schema(name)):
        assert enum.get("default") == "UNKNOWN" == enum["symbols"][0], enum["name"]


def test_session_event_type_symbols() -> None:
    (event_type,) = [e for e in _enums(raw_schema("SessionEvent")) if e["name"] == "EventType"]
    assert event_type["symbols"] == [
        "UNKNOWN",
        "AUTHORIZATION_STARTED", "AUTHORIZATION_SUCCEEDED", "AUTHORIZATION_FAILED",
        "AUTHORIZATION_TIMED_OUT", "DEAUTHORIZED", "DISCONNECTED",
        "WEBHOOK_PENDING", "WEBHOOK_RECEIVED", "WEBHOOK_FAILED",
        "LOADING_STARTED", "LOADING_COMPLETED", "LOADING_FAILED",
        "DEDUPLICATION_STARTED", "DEDUPLICATION_FAILED",
        "STRUCTURING_STARTED", "STRUCTURING_COMPLETED", "STRUCTURING_FAILED",
        "PROCESSING_STARTED", "PROCESSING_SUBSTAGE_COMPLETED", "PROCESSING_FAILED",
        "PROCESSING_COMPLETED", "SYNC_COMPLETED", "STAGE_TIMED_OUT",
        "ACCOUNTS_SYNC_STARTED", "ACCOUNTS_SYNCED", "ACCOUNTS_SYNC_FAILED",
        "CONNECTION_DELETED",
    ]  # fmt: skip


# --- fingerprints ------------------------------------------------------------------

# Published by Apache Avro (share/test/data/schema-tests.txt) as signed 64-bit ints.
SPEC_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"fixed","name":"foo","size":15}', '{"name":"foo","type":"fixed","size":15}',
     1756455273707447556),
    ('{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}',
     '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
     7843277075252814651),
    ('{"type":"record","name":"PigValue","fields":[{"name":"value",'
     '"type":["null","int","long","PigValue"]}]}',
     '{"name":"PigValue","type":"record","fields":[{"name":"value",'
     '"type":["null","int","long","PigValue"]}]}',
     -1759257747318642341),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "canonical", "signed"), SPEC_VECTORS)
def test_independent_fingerprint_matches_avro_spec_vectors(
    schema: str, canonical: str, signed: int
) -> None:
    assert canonical_form(json.loads(schema)) == canonical
    assert crc64_avro(canonical.encode()) == signed % 2**64


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_fingerprint_matches_independent_computation(name: str) -> None:
    raw = raw_schema(name)
    assert canonical_form(raw) == to_parsing_canonical_form(raw)
    expected = fingerprint_bytes(raw)
    assert schema_fingerprint(raw) == expected
    codec = SingleObjectCodec(name)
    assert codec.fingerprint == expected
    assert codec.header == b"\xc3\x01" + expected


# --- codec -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_message_decodes_with_plain_fastavro_and_only_the_avsc(name: str) -> None:
    """What a consumer in any language does: split the header by hand, look the
    fingerprint up, decode the body with the .avsc."""
    avsc = raw_schema(name)
    codec = SingleObjectCodec(name)
    for record in sample_records(avsc):
        data = codec.encode(record)
        assert data[:2] == b"\xc3\x01"
        assert data[2:10] == fingerprint_bytes(avsc)
        body = BytesIO(data[10:])
        assert fastavro.schemaless_reader(body, fastavro.parse_schema(avsc)) == record
        assert body.read() == b""


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_round_trip_of_every_symbol_and_branch(name: str) -> None:
    codec = SingleObjectCodec(name)
    records = sample_records(raw_schema(name))
    assert len(records) > 1
    for record in records:
        assert codec.decode(codec.encode(record)) == record


def test_encode_accepts_str_uuid_epoch_millis_and_omitted_defaults() -> None:
    codec = SingleObjectCodec("SessionEvent")
    record = session_event(
        event_id="0b7e2f0c-3c4e-4c1e-9a52-5a4f0f3e9b11", occurred_at=1735787045678
    )
    for key in ("error", "substage", "attributes"):
        del record[key]
    assert codec.decode(codec.encode(record)) == session_event()


def test_encode_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="more fields"):
        SingleObjectCodec("SessionEvent").encode(session_event(typo_field="x"))


def test_decode_accepts_bytes_like() -> None:
    codec = SingleObjectCodec("SessionEvent")
    data = codec.encode(session_event())
    assert codec.decode(memoryview(data)) == codec.decode(bytearray(data)) == session_event()


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b"\xc3\x01\x00", b"not avro at all", b"\xc3\x02" + bytes(20)]
)
def test_garbage_is_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableMessage) as err:
        SingleObjectCodec("SessionEvent").decode(data)
    assert err.value.reason == DecodeFailure.NOT_SINGLE_OBJECT == "not_single_object"


def test_unknown_fingerprint_is_unknown_schema() -> None:
    events, statuses = SingleObjectCodec("SessionEvent"), SingleObjectCodec("StatusChanged")
    data = events.encode(session_event())
    with pytest.raises(UnknownSchema) as err:
        statuses.decode(data)
    assert err.value.reason == DecodeFailure.UNKNOWN_FINGERPRINT
    assert err.value.fingerprint == events.fingerprint
    assert isinstance(err.value, DecodeError) and not isinstance(err.value, UndecodableMessage)


def test_every_truncation_is_undecodable() -> None:
    codec = SingleObjectCodec("SessionEvent")
    data = codec.encode(session_event(error="boom", substage="INSIGHTS", attributes={"a": "b"}))
    for cut in range(10, len(data)):
        with pytest.raises(UndecodableMessage) as err:
            codec.decode(data[:cut])
        assert err.value.reason == DecodeFailure.BODY_UNDECODABLE


def test_trailing_bytes_are_undecodable() -> None:
    codec = SingleObjectCodec("SessionEvent")
    with pytest.raises(UndecodableMessage) as err:
        codec.decode(codec.encode(session_event()) + b"\x00")
    assert err.value.reason == DecodeFailure.TRAILING_BYTES


def test_corrupt_body_is_undecodable() -> None:
    codec = SingleObjectCodec("SessionEvent")
    header = codec.header
    uuid_field = b"\x48" + b"0" * 36  # length 36 (zigzag 0x48), then 36 bytes
    with pytest.raises(UndecodableMessage) as err:
        codec.decode(header + uuid_field + b"\x7e")  # enum index 63: no such symbol
    assert err.value.reason == DecodeFailure.BODY_UNDECODABLE


# --- evolution ---------------------------------------------------------------------


def evolved_session_event() -> dict[str, Any]:
    """A plausible v2: one appended event type and one new field with a default."""
    v2 = copy.deepcopy(raw_schema("SessionEvent"))
    v2["fields"][1]["type"]["symbols"].append("QUARANTINED")
    v2["fields"].append(
        {"name": "attempt", "type": "int", "default": 1, "doc": "Delivery attempt."}
    )
    return v2


def test_old_reader_decodes_new_event_type_as_unknown() -> None:
    v2 = evolved_session_event()
    new_producer = SingleObjectCodec(v2)
    data = new_producer.encode(session_event(type="QUARANTINED", attempt=3))

    with pytest.raises(UnknownSchema):  # an old reader that was not told about v2
        SingleObjectCodec("SessionEvent").decode(data)
    old_reader = SingleObjectCodec("SessionEvent", writer_schemas=[v2])
    assert old_reader.known_fingerprints == {old_reader.fingerprint, new_producer.fingerprint}
    assert old_reader.decode(data) == session_event(type="UNKNOWN")

    new_reader = SingleObjectCodec(v2, writer_schemas=[raw_schema("SessionEvent")])
    old_data = SingleObjectCodec("SessionEvent").encode(session_event())
    assert new_reader.decode(old_data) == session_event(attempt=1)


def test_checker_accepts_compatible_changes() -> None:
    current = raw_schema("SessionEvent")
    check_compatible(current, current)
    check_compatible(current, evolved_session_event())


def _mutated(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(raw_schema("SessionEvent"))
    edit(schema)
    return schema


@pytest.mark.parametrize(
    ("why", "old", "new"),
    [
        (
            "new event type, but the enum has no default: old readers fail",
            _mutated(lambda s: s["fields"][1]["type"].pop("default")),
            _mutated(lambda s: (s["fields"][1]["type"].pop("default"),
                                s["fields"][1]["type"]["symbols"].append("NEW"))),
        ),
        (
            "new field without default: new readers cannot read old data",
            raw_schema("SessionEvent"),
            _mutated(lambda s: s["fields"].append({"name": "x", "type": "int"})),
        ),
        (
            "required field removed: old readers cannot read new data",
            raw_schema("SessionEvent"),
            _mutated(lambda s: s["fields"].pop(6)),
        ),
        (
            "field type changed",
            raw_schema("SessionEvent"),
            _mutated(lambda s: s["fields"][2].update(type="long")),
        ),
        (
            "string became bytes: Avro resolves it, but consumers get bytes, not str",
            raw_schema("SessionEvent"),
            _mutated(lambda s: s["fields"][2].update(type="bytes")),
        ),
        (
            "symbol removed from an enum without default: new readers fail on old data",
            _mutated(lambda s: s["fields"][1]["type"].pop("default")),
            _mutated(lambda s: (s["fields"][1]["type"].pop("default"),
                                s["fields"][1]["type"]["symbols"].remove("DISCONNECTED"))),
        ),
    ],
)  # fmt: skip
def test_checker_rejects_incompatible_changes(why: str, old: Any, new: Any) -> None:
    with pytest.raises(IncompatibleSchemas):
        check_compatible(old, new)


HISTORY = sorted((SCHEMA_DIR / "history").glob("*.avsc"))


def test_every_schema_is_released_unchanged_and_compatible_with_every_earlier_version() -> None:
    assert history_problems(SCHEMA_DIR) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["fields"].pop(3), "StatusChanged changed without a new version"),
        (
            lambda s: (s["fields"].pop(3), s.update(version=4)),
            "StatusChanged v4 is not kept as StatusChanged.v4.avsc",
        ),
        (
            lambda s: (s["fields"].pop(3), s.update(version=4)),
            "StatusChanged against StatusChanged.v1.avsc: forward",
        ),
    ],
    ids=["edited-in-place", "new-version-not-kept", "new-version-breaks-old-readers"],
)
def test_the_gate_fails_when_a_field_without_default_is_removed(
    tmp_path: Path, edit: Any, expected: str
) -> None:
    copy_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, copy_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    schema = raw_schema("StatusChanged")
    assert "default" not in schema["fields"][3]
    edit(schema)
    (copy_dir / "StatusChanged.avsc").write_text(json.dumps(schema))
    assert any(problem.startswith(expected) for problem in history_problems(copy_dir))


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_messages_of_earlier_versions_still_decode(path) -> None:
    from syncstatus.schemas.codec import schema_fingerprint
    from syncstatus.schemas.messages import CommandMessages, EventMessages, StatusChangeMessages

    codecs = {
        "SessionEvent": EventMessages().codec,
        "StatusChanged": StatusChangeMessages().codec,
        "ConnectionCommand": CommandMessages().codec,
    }
    codec = codecs[path.name.split(".")[0]]
    assert schema_fingerprint(json.loads(path.read_text())) in codec.known_fingerprints


def test_the_current_version_number_is_the_highest_released_one() -> None:
    for path in HISTORY:
        name, version = path.name.split(".")[:2]
        assert raw_schema(name)["version"] >= int(version.removeprefix("v"))


@pytest.mark.parametrize(
    ("name", "version", "default"),
    [
        ("SessionEvent", 5, None),
        ("StatusChanged", 3, "default"),
        ("ConnectionCommand", 2, "default"),
    ],
)
def test_the_workspace_versions_add_workspace_id_with_a_default_both_ways(name, version, default):
    """Released, current, and readable by and from every earlier version (the gate above);
    here: the one field they add, and what each side reads when the other lacks it."""
    current = raw_schema(name)
    assert current["version"] == version
    (field,) = [f for f in current["fields"] if f["name"] == "workspace_id"]
    assert field["default"] == default
    previous = json.loads((SCHEMA_DIR / "history" / f"{name}.v{version - 1}.avsc").read_text())
    assert [f["name"] for f in current["fields"]] == [
        *(f["name"] for f in previous["fields"]),
        "workspace_id",
    ]
    check_compatible(previous, current)
    old_record = sample_records(previous)[0]
    read = SingleObjectCodec(current, writer_schemas=[previous]).decode(
        SingleObjectCodec(previous).encode(old_record)
    )
    assert read == {**old_record, "workspace_id": default}
    new_record = {**sample_records(current)[0], "workspace_id": "acme"}
    assert SingleObjectCodec(previous, writer_schemas=[current]).decode(
        SingleObjectCodec(current).encode(new_record)
    ) == {k: v for k, v in new_record.items() if k != "workspace_id"}
