"""Independent Parsing Canonical Form and CRC-64-AVRO, written from the Avro spec.

Exists so tests can check the codec's fingerprints without trusting fastavro's: if
both disagreed with the spec, other-language consumers could not find our schemas.
Covers what the spec's PCF rules need for ordinary schemas (no aliases).
"""

import json
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})

_EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The spec's 64-bit Rabin fingerprint, as an unsigned int."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical_form(schema: Any) -> str:
    """Parsing Canonical Form of a raw JSON schema ([PRIMITIVES] [FULLNAMES] [STRIP] [ORDER]...)."""
    return _pcf(schema, None, set())


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))  # [STRINGS] [WHITESPACE]


def _pcf(schema: Any, namespace: str | None, seen: set[str]) -> str:
    if isinstance(schema, list):
        return "[" + ",".join(_pcf(branch, namespace, seen) for branch in schema) + "]"
    if isinstance(schema, str):
        return _dump(schema if schema in PRIMITIVES else fullname(schema, namespace))
    kind = schema["type"]
    if not isinstance(kind, str) or kind not in NAMED | {"array", "map"}:
        return _pcf(kind, namespace, seen)  # {"type": "long", "logicalType": ...} -> "long"
    if kind == "array":
        return '{"type":"array","items":' + _pcf(schema["items"], namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + _pcf(schema["values"], namespace, seen) + "}"
    name = fullname(schema["name"], schema.get("namespace", namespace))
    if name in seen:  # a named type is spelled out once, then referred to by name
        return _dump(name)
    seen.add(name)
    inner = name.rpartition(".")[0] or None
    head = '{"name":' + _dump(name) + ',"type":' + _dump(kind)
    if kind == "enum":
        return head + ',"symbols":' + _dump(schema["symbols"]) + "}"
    if kind == "fixed":
        return head + ',"size":' + str(int(schema["size"])) + "}"
    fields = ",".join(
        '{"name":' + _dump(f["name"]) + ',"type":' + _pcf(f["type"], inner, seen) + "}"
        for f in schema["fields"]
    )
    return head + ',"fields":[' + fields + "]}"


def fingerprint_bytes(schema: Any) -> bytes:
    """Fingerprint as framed in single-object encoding: 8 bytes, little-endian."""
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")
