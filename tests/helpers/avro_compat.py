"""Sample-record generator and a round-trip schema compatibility check.

fastavro has no schema-compatibility checker, so compatibility is proven the way it
matters in production: encode records with one schema and decode them with the other
through Avro schema resolution. The generator walks a schema and makes records that
together use every enum symbol, every union branch and edge values of each primitive.

Limits: no recursive schemas; logical types other than uuid, date and timestamp-*
get plain values of their underlying type; unions of several records or of
enum+string cannot be steered to a branch (fastavro picks by value).
"""

import json
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from tests.helpers.avro_fingerprint import NAMED, PRIMITIVES, fullname

_PRIMITIVE_SAMPLES: dict[str, list[Any]] = {
    "null": [None],
    "boolean": [False, True],
    "int": [0, -1, 2**31 - 1, -(2**31)],
    "long": [0, -1, 2**63 - 1, -(2**63)],
    "float": [0.0, 1.5, -2.25],  # exactly representable in float32
    "double": [0.0, 1.5, -1e300],
    "bytes": [b"", b"\x00\xff"],
    "string": ["", "plain", "ünïcödé ✓"],
}
# Values in the form fastavro returns them, so a round trip compares equal.
_LOGICAL_SAMPLES: dict[tuple[str, str], list[Any]] = {
    ("string", "uuid"): [UUID(int=0), UUID("6f1c2c9e-8d3a-4b7e-9f2d-1a2b3c4d5e6f")],
    ("int", "date"): [date(1970, 1, 1), date(2024, 2, 29)],
    ("long", "timestamp-millis"): [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
    ],
    ("long", "timestamp-micros"): [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    ],
}


class IncompatibleSchemas(AssertionError):
    """Records written with one schema cannot be (faithfully) read with the other."""


def sample_values(schema: Any) -> list[Any]:
    """Values of ``schema`` (raw JSON or parsed) covering every symbol and union branch."""
    return _samples(schema, None, {})


def sample_records(schema: Any) -> list[dict[str, Any]]:
    """Like ``sample_values`` for a record schema; named for readability at call sites."""
    return _samples(schema, None, {})


def _samples(schema: Any, namespace: str | None, named: dict[str, tuple[Any, Any]]) -> list[Any]:
    if isinstance(schema, list):
        return [value for branch in schema for value in _samples(branch, namespace, named)]
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return list(_PRIMITIVE_SAMPLES[schema])
        definition, its_namespace = named[fullname(schema, namespace)]
        return _samples(definition, its_namespace, named)
    kind = schema["type"]
    logical = (kind, schema.get("logicalType"))
    if logical in _LOGICAL_SAMPLES:
        return list(_LOGICAL_SAMPLES[logical])
    if not isinstance(kind, str) or kind not in NAMED | {"array", "map"}:
        return _samples(kind, namespace, named)  # {"type": <primitive|name|schema>}
    if kind == "array":
        return [[], _samples(schema["items"], namespace, named)]
    if kind == "map":
        values = _samples(schema["values"], namespace, named)
        return [{}, {f"k{i}": value for i, value in enumerate(values)}]
    name = fullname(schema["name"], schema.get("namespace", namespace))
    named[name] = (schema, namespace)
    if kind == "enum":
        return list(schema["symbols"])
    if kind == "fixed":
        return [b"\x00" * schema["size"], b"\xff" * schema["size"]]
    inner = name.rpartition(".")[0] or None
    columns = {f["name"]: _samples(f["type"], inner, named) for f in schema["fields"]}
    # Record i takes the i-th sample of every field (cycling), so each sample appears once.
    count = max((len(c) for c in columns.values()), default=1)
    return [{k: c[i % len(c)] for k, c in columns.items()} for i in range(count)]


def _enum_defaults(schema: Any) -> set[tuple[str, frozenset[str]]]:
    """(default, symbols) of every enum in ``schema``, to recognise legit substitutions."""
    found: set[tuple[str, frozenset[str]]] = set()
    if isinstance(schema, list):
        for item in schema:
            found |= _enum_defaults(item)
    elif isinstance(schema, dict):
        if schema.get("type") == "enum" and "default" in schema:
            found.add((schema["default"], frozenset(schema["symbols"])))
        for key, value in schema.items():
            if not key.startswith("__"):
                found |= _enum_defaults(value)
    return found


def _preserved(written: Any, read: Any, enum_defaults: set[tuple[str, frozenset[str]]]) -> bool:
    """Whether ``read`` carries ``written``'s data, allowing what resolution may change.

    Allowed: fields added (reader defaults) or dropped by the reader, and a symbol the
    reader's enum lacks becoming that enum's default.
    """
    if written == read:
        return True
    if isinstance(written, dict) and isinstance(read, dict):
        return all(_preserved(written[k], read[k], enum_defaults) for k in written.keys() & read)
    if isinstance(written, list) and isinstance(read, list) and len(written) == len(read):
        return all(_preserved(w, r, enum_defaults) for w, r in zip(written, read, strict=True))
    return isinstance(written, str) and any(
        read == default and written not in symbols for default, symbols in enum_defaults
    )


def check_reads(writer: Any, reader: Any, label: str = "") -> None:
    """Every sample written with ``writer`` decodes with ``reader``, data preserved.

    The decoded record must also re-encode with ``reader``: resolution produced a
    valid reader-side record, not merely something fastavro returned.
    """
    writer_parsed, reader_parsed = parse_schema(writer), parse_schema(reader)
    enum_defaults = _enum_defaults(reader_parsed)
    problems = []
    for record in sample_records(writer):
        buf = BytesIO()
        schemaless_writer(buf, writer_parsed, record)
        buf.seek(0)
        try:
            read = schemaless_reader(buf, writer_parsed, reader_parsed)
            schemaless_writer(BytesIO(), reader_parsed, read)
        except Exception as exc:
            problems.append(f"{record!r}: {type(exc).__name__}: {exc}")
            continue
        if not _preserved(record, read, enum_defaults):
            problems.append(f"{record!r} was read as {read!r}")
    if problems:
        raise IncompatibleSchemas(
            f"{label or 'writer -> reader'}: {len(problems)} record(s) failed, e.g.\n"
            + "\n".join(problems[:5])
        )


def check_compatible(old_schema: Any, new_schema: Any) -> None:
    """Raise ``IncompatibleSchemas`` unless the change is backward AND forward compatible.

    Backward: consumers on ``new_schema`` read data written with ``old_schema``.
    Forward: consumers still on ``old_schema`` read data written with ``new_schema``.
    Both are needed because producers and consumers are deployed independently.
    """
    check_reads(old_schema, new_schema, "backward (old data, new reader)")
    check_reads(new_schema, old_schema, "forward (new data, old reader)")


def history_problems(schema_dir: Path) -> list[str]:
    """What is wrong between the current schemas and every released one kept in ``history/``.

    Each current ``<name>.avsc`` must be released as ``history/<name>.v<version>.avsc``
    unchanged (a released version is never edited), and must read data of every earlier
    version and be readable by it. A breaking edit therefore fails on a clean checkout.
    """
    found = []
    for path in sorted(schema_dir.glob("*.avsc")):
        current = json.loads(path.read_text(encoding="utf-8"))
        name, version = path.stem, current.get("version")
        released = schema_dir / "history" / f"{name}.v{version}.avsc"
        if not released.exists():
            found.append(f"{name} v{version} is not kept as {released.name}")
        elif json.loads(released.read_text(encoding="utf-8")) != current:
            found.append(f"{name} changed without a new version (v{version} was released)")
        for earlier in sorted((schema_dir / "history").glob(f"{name}.v*.avsc")):
            try:
                check_compatible(json.loads(earlier.read_text(encoding="utf-8")), current)
            except IncompatibleSchemas as error:
                found.append(f"{name} against {earlier.name}: {error}")
    return found
