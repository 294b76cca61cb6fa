"""Avro schemas of syncstatus and a codec for Avro single-object encoding.

Every Kafka message is framed as the Avro spec's single-object encoding:
``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
Parsing Canonical Form + Avro binary body. Any Avro library can therefore decode a
message from the ``.avsc`` alone, without a schema registry.

Fingerprints are slow to compute (~1.8k/s), so they are computed once per schema
when a codec is built; the encode/decode hot path only does a dict lookup and the
fastavro (Cython) body encoding.

Decoded values are exactly what fastavro returns, not re-normalised:
``timestamp-millis`` fields are timezone-aware UTC ``datetime`` objects and
``uuid`` fields (``event_id``, ``cause_event_id``) are ``uuid.UUID`` objects.
``encode`` accepts ``datetime`` (naive is taken as UTC) or epoch-millis ``int``,
and ``UUID`` or ``str``.

This module knows nothing about Kafka or SQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from importlib import resources
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = [
    "MAGIC",
    "HEADER_SIZE",
    "SESSION_EVENT",
    "STATUS_CHANGED",
    "CONNECTION_COMMAND",
    "DecodeFailure",
    "DecodeError",
    "UndecodableMessage",
    "UnknownSchema",
    "load_schema",
    "earlier_versions",
    "schema_fingerprint",
    "SingleObjectCodec",
]

MAGIC = b"\xc3\x01"
"""Single-object encoding marker (format version 1)."""
HEADER_SIZE = len(MAGIC) + 8

SESSION_EVENT = "SessionEvent"
STATUS_CHANGED = "StatusChanged"
CONNECTION_COMMAND = "ConnectionCommand"


class DecodeFailure(StrEnum):
    """Machine-readable reason of a decode failure (a str, usable as a metric label)."""

    NOT_SINGLE_OBJECT = "not_single_object"  # too short or wrong marker bytes
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # framed, but writer schema not known
    BODY_UNDECODABLE = "body_undecodable"  # truncated or corrupt Avro body
    TRAILING_BYTES = "trailing_bytes"  # body decoded but bytes were left over


class DecodeError(ValueError):
    """A message that cannot be turned into a record; ``reason`` says why."""

    def __init__(self, reason: DecodeFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class UndecodableMessage(DecodeError):
    """Not single-object framed, truncated, or the body does not decode. Never retryable."""


class UnknownSchema(DecodeError):
    """Well framed, but written with a schema this decoder does not know.

    Kept apart from ``UndecodableMessage`` because it is usually a deployment-order
    problem (producer upgraded before consumer), not a corrupt message.
    """

    def __init__(self, fingerprint: bytes) -> None:
        super().__init__(DecodeFailure.UNKNOWN_FINGERPRINT, f"fingerprint {fingerprint.hex()}")
        self.fingerprint = fingerprint


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Parsed (fastavro) schema of ``<name>.avsc`` shipped in this package.

    Cached and shared: treat the result as read-only.
    """
    text = resources.files(__package__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")
    return parse_schema(json.loads(text))


def earlier_versions(name: str) -> list[dict[str, Any]]:
    """Every earlier published version of a schema (``history/<name>.v<N>.avsc``), so that
    messages producers wrote with them still decode."""
    history = resources.files(__package__).joinpath("history")
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(history.iterdir(), key=lambda p: p.name)
        if path.name.startswith(f"{name}.v") and path.name.endswith(".avsc")
    ]


def schema_fingerprint(schema: Any) -> bytes:
    """8-byte CRC-64-AVRO fingerprint of ``schema``'s Parsing Canonical Form, little-endian.

    Works on raw JSON or parsed schemas. Slow: call it at start-up, not per message.
    """
    # fastavro's hex digest is already in little-endian byte order, as framed on the wire.
    return bytes.fromhex(_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class SingleObjectCodec:
    """Encode/decode one record type as Avro single-object encoded bytes.

    ``schema`` is a schema name from this package (``"SessionEvent"``) or a schema
    dict. It is the writer schema of ``encode`` and the reader schema of ``decode``.
    ``writer_schemas`` are other (older or newer) versions that ``decode`` accepts:
    their messages are resolved into ``schema`` by Avro schema resolution, so e.g. an
    event type unknown to ``schema`` becomes the enum default ``UNKNOWN``.
    """

    def __init__(
        self, schema: str | Mapping[str, Any], *, writer_schemas: Iterable[Any] = ()
    ) -> None:
        self.schema = load_schema(schema) if isinstance(schema, str) else parse_schema(schema)
        self.fingerprint = schema_fingerprint(self.schema)
        self.header = MAGIC + self.fingerprint
        # fingerprint -> writer schema; None means "same as self.schema, no resolution".
        self._writers: dict[bytes, dict[str, Any] | None] = {self.fingerprint: None}
        for writer in writer_schemas:
            self.add_writer_schema(writer)

    def add_writer_schema(self, schema: Any) -> bytes:
        """Accept messages written with ``schema`` too; returns its fingerprint.

        Compatibility with the reader schema is not checked here; that is the job
        of the schema-compatibility tests.
        """
        parsed = parse_schema(schema)
        fp = schema_fingerprint(parsed)
        if fp != self.fingerprint:
            self._writers[fp] = parsed
        return fp

    @property
    def known_fingerprints(self) -> frozenset[bytes]:
        return frozenset(self._writers)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Frame ``record``. Raises fastavro's ``ValueError``/``TypeError`` on a bad record.

        Unknown keys are an error (they would otherwise be dropped silently, hiding
        typos); fields with a schema default may be omitted.
        """
        buf = BytesIO()
        buf.write(self.header)
        schemaless_writer(buf, self.schema, record, strict_allow_default=True)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Record from framed bytes; raises ``UndecodableMessage`` or ``UnknownSchema``."""
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise UndecodableMessage(
                DecodeFailure.NOT_SINGLE_OBJECT,
                f"{len(data)} bytes, starts {bytes(data[:2]).hex()}",
            )
        fp = bytes(data[2:HEADER_SIZE])
        try:
            writer = self._writers[fp]
        except KeyError:
            raise UnknownSchema(fp) from None
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            if writer is None:
                record = schemaless_reader(buf, self.schema)
            else:
                record = schemaless_reader(buf, writer, self.schema)
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeError, ...
            raise UndecodableMessage(
                DecodeFailure.BODY_UNDECODABLE, f"{type(exc).__name__}: {exc}"
            ) from exc
        if buf.tell() != len(data):
            raise UndecodableMessage(
                DecodeFailure.TRAILING_BYTES, f"{len(data) - buf.tell()} bytes after the body"
            )
        return record
