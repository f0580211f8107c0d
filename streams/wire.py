"""Between Kafka messages and :class:`recsys.archive.ArchivedMessage`, byte for byte.

The archive stores a message's value decoded (any Avro tool reads it) plus its wire
schema id; :func:`wire_bytes` rebuilds the exact Confluent wire bytes from that. When
re-encoding would not reproduce the consumed bytes (a value written with an older
schema version), :func:`archived_from_inbound` keeps the original bytes as well.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from fastavro import parse_schema, schemaless_writer

from recsys.archive import ArchivedMessage
from recsys.records import Record
from streams.consumer_loop import Inbound
from streams.exceptions import SerializationError
from streams.serde import MAGIC_BYTE, AvroSerde
from streams.topics import TopicSpec

__all__ = ["archived_from_inbound", "archived_from_raw", "schema_id_of_wire", "wire_bytes"]

_HEADER = struct.Struct(">bI")


def schema_id_of_wire(data: bytes) -> int:
    """Schema id in a Confluent wire header."""
    if len(data) < _HEADER.size or data[0] != MAGIC_BYTE:
        raise SerializationError("bad_magic_byte", "not Confluent Avro wire bytes")
    return int(_HEADER.unpack_from(data)[1])


def _archived(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: str | None,
    headers: list[tuple[str, bytes]],
    raw: bytes,
    record: Record,
    serde: AvroSerde,
    topic_id: str | None = None,
) -> ArchivedMessage:
    codec = serde.codec(type(record))
    value = record.model_dump(mode="python")
    body = io.BytesIO()
    schemaless_writer(body, codec.parsed, value)
    # the header's schema id is kept as it was, so an identical body is enough
    exact = raw[_HEADER.size :] == body.getvalue()
    return ArchivedMessage(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=key,
        headers=list(headers),
        schema_id=schema_id_of_wire(raw),
        value=value,
        raw_value=None if exact else raw,
        topic_id=topic_id,
        value_schema=codec.schema,
    )


def archived_from_inbound(inbound: Inbound[Any], serde: AvroSerde) -> ArchivedMessage:
    """An archived copy of a consumed, decoded message (needs its raw bytes)."""
    if inbound.raw_value is None:
        raise ValueError(f"{inbound.source}: the consumer did not keep the raw value")
    return _archived(
        topic=inbound.topic,
        partition=inbound.partition,
        offset=inbound.offset,
        timestamp_ms=inbound.timestamp_ms,
        key=inbound.key,
        headers=inbound.headers,
        raw=inbound.raw_value,
        record=inbound.value,
        serde=serde,
        topic_id=inbound.topic_id,
    )


def archived_from_raw(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    headers: list[tuple[str, bytes]],
    value: bytes,
    spec: TopicSpec,
    serde: AvroSerde,
) -> ArchivedMessage:
    """An archived copy of raw message bytes (decoded with ``spec``'s record type).

    Raises:
        SerializationError: the value does not decode.
    """
    assert spec.value is not None
    record = serde.decode(value, spec.value)
    return _archived(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=key.decode() if key is not None else None,
        headers=headers,
        raw=value,
        record=record,
        serde=serde,
    )


_parsed: dict[str, Any] = {}


def wire_bytes(message: ArchivedMessage) -> bytes:
    """The message's value exactly as it was on the wire."""
    if message.raw_value is not None:
        return message.raw_value
    if message.value_schema is None:
        raise ValueError(f"{message.source}: no value schema to re-encode with")
    cache_key = repr(message.value_schema)
    parsed = _parsed.get(cache_key)
    if parsed is None:
        parsed = _parsed[cache_key] = parse_schema(message.value_schema, _write_hint=False)
    buf = io.BytesIO()
    buf.write(_HEADER.pack(MAGIC_BYTE, message.schema_id))
    schemaless_writer(buf, parsed, message.value)
    return buf.getvalue()
