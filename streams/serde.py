"""Avro serde in Confluent's wire format: ``0x00 | schema id (4 bytes, big-endian) | Avro``.

One codec for every producer and consumer. Decoding resolves the writer
schema named in the header against the reader schema of the current record class
(standard Avro schema resolution), then validates values with the pydantic model.
Every failure is a :class:`SerializationError` whose ``reason`` ends up in the
dead-letter headers.

Text with a NUL character (U+0000) is valid Avro and valid Unicode, but no Postgres
``text``/``jsonb`` value can hold it: decoding refuses it as an ``invalid_value``, so it
reaches the dead-letter topic at the door instead of failing a database write later.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from pydantic import ValidationError

from recsys.records import Record
from streams.exceptions import SchemaNotFound, SerializationError
from streams.registry import LocalRegistry, Schema, SchemaRegistry, load_avsc

__all__ = ["MAGIC_BYTE", "AvroSerde", "RecordCodec", "nul_path"]

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

R = TypeVar("R", bound=Record)


def nul_path(value: Any, path: str = "") -> str | None:
    """Dotted path of the first string (or map key) holding U+0000 in a decoded datum."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            label = str(key).replace("\x00", "\\0")
            here = f"{path}.{label}" if path else label
            if isinstance(key, str) and "\x00" in key:
                return here
            if (found := nul_path(item, here)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := nul_path(item, f"{path}.{i}" if path else str(i))) is not None:
                return found
    return None


@dataclass(frozen=True)
class RecordCodec:
    """The schema pieces of one record class, parsed once."""

    model: type[Record]
    schema: Schema
    parsed: Any


class AvroSerde:
    """Encode and decode records; safe to share between threads."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry: SchemaRegistry = registry or LocalRegistry()
        self._codecs: dict[type[Record], RecordCodec] = {}
        self._writers: dict[int, Any] = {}
        # (subject, record type) → schema id: the registry lookup hashes the schema's
        # canonical form, far too slow to repeat for every message
        self._ids: dict[tuple[str, type[Record]], int] = {}
        self._resolve: dict[tuple[int, type[Record]], tuple[Any, Any]] = {}

    def codec(self, model: type[Record]) -> RecordCodec:
        """Parsed reader/writer schema for ``model`` (loaded from ``schemas/`` once)."""
        codec = self._codecs.get(model)
        if codec is None:
            schema = load_avsc(model.avro_name)
            codec = RecordCodec(model, schema, parse_schema(schema, _write_hint=False))
            self._codecs[model] = codec
        return codec

    def encode(self, record: Record, subject: str) -> bytes:
        """Record → wire bytes. ``subject`` names the registry subject (``<topic>-value``)."""
        codec = self.codec(type(record))
        key = (subject, type(record))
        schema_id = self._ids.get(key)
        if schema_id is None:
            schema_id = self._ids[key] = self.registry.id_for(subject, codec.schema)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        try:
            schemaless_writer(buf, codec.parsed, record.model_dump(mode="python"))
        except (ValueError, TypeError, KeyError) as exc:
            raise SerializationError(
                "encode_failed", f"cannot encode {type(record).__name__}: {exc}"
            ) from exc
        return buf.getvalue()

    def decode(self, data: bytes | None, model: type[R]) -> R:
        """Wire bytes → validated record of type ``model``.

        Raises:
            SerializationError: with ``reason`` one of ``empty``, ``bad_magic_byte``,
                ``unknown_schema_id``, ``avro_decode_failed``, ``invalid_value``.
        """
        if not data:
            raise SerializationError("empty", "message value is empty (tombstone or no bytes)")
        if len(data) < _HEADER.size:
            raise SerializationError("bad_magic_byte", f"message too short ({len(data)} bytes)")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise SerializationError(
                "bad_magic_byte", f"magic byte {magic} is not {MAGIC_BYTE}: not Confluent Avro"
            )
        writer, reader = self._resolution(schema_id, model)
        try:
            raw = schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, reader)
        except SchemaNotFound:
            raise
        except Exception as exc:  # fastavro raises many types for corrupt input
            raise SerializationError(
                "avro_decode_failed",
                f"cannot decode {model.__name__} with writer schema {schema_id}: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        if (where := nul_path(raw)) is not None:
            raise SerializationError(
                "invalid_value",
                f"invalid {model.__name__}: {where or model.__name__}: text contains a NUL "
                "character (U+0000), which Postgres text cannot store",
            )
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or model.__name__}: {e['msg']}"
                for e in exc.errors()
            )
            raise SerializationError(
                "invalid_value", f"invalid {model.__name__}: {problems}"
            ) from exc

    def _resolution(self, schema_id: int, model: type[Record]) -> tuple[Any, Any]:
        """Writer and reader schema to decode with; no reader when both are the same
        schema (fastavro then skips resolution, the common case and the fast one)."""
        key = (schema_id, model)
        found = self._resolve.get(key)
        if found is None:
            writer, codec = self._writer(schema_id), self.codec(model)
            same = parse_schema(codec.schema, _write_hint=False) == writer
            found = self._resolve[key] = (codec.parsed, None) if same else (writer, codec.parsed)
        return found

    def _writer(self, schema_id: int) -> Any:
        parsed = self._writers.get(schema_id)
        if parsed is None:
            parsed = parse_schema(self.registry.schema_for(schema_id), _write_hint=False)
            self._writers[schema_id] = parsed
        return parsed
