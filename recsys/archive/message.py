"""One archived Kafka message: its coordinates, its decoded value and how to get its
exact bytes back.

The envelope keeps the topic, partition, offset, timestamp, key and headers of the
original message, the schema id of its wire header and the value as a nested Avro
record (readable by any Avro tool). ``raw_value`` holds the original wire bytes only
when re-encoding the value would not reproduce them (a record written with an older
schema version); otherwise it is null, so the archive does not store every value twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArchivedMessage", "envelope_schema"]

Schema = dict[str, Any]


def envelope_schema(value_schema: Schema) -> Schema:
    """The file schema around a topic's value schema."""
    return {
        "type": "record",
        "name": "ArchivedMessage",
        "namespace": "streamrec.archive",
        "doc": "A Kafka message as archived: coordinates, key, headers, decoded value.",
        "fields": [
            {"name": "topic", "type": "string", "doc": "Source topic."},
            {"name": "partition", "type": "int", "doc": "Source partition."},
            {"name": "offset", "type": "long", "doc": "Source offset."},
            {"name": "timestamp_ms", "type": "long", "doc": "Kafka timestamp, epoch ms."},
            {"name": "key", "type": ["null", "string"], "doc": "Message key."},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Header",
                        "fields": [
                            {"name": "name", "type": "string"},
                            {"name": "value", "type": "bytes"},
                        ],
                    },
                },
                "doc": "Message headers, in order.",
            },
            {"name": "schema_id", "type": "int", "doc": "Schema id of the wire header."},
            {"name": "value", "type": value_schema, "doc": "The decoded value."},
            {
                "name": "raw_value",
                "type": ["null", "bytes"],
                "default": None,
                "doc": "Original wire bytes when re-encoding the value would differ.",
            },
            {
                "name": "topic_id",
                "type": ["null", "string"],
                "default": None,
                "doc": "Kafka topic id of the source topic: which incarnation of the name "
                "the offset belongs to (offsets restart when a topic is recreated).",
            },
        ],
    }


@dataclass(frozen=True)
class ArchivedMessage:
    """A message with its Kafka coordinates (from the archive or read from Kafka)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: list[tuple[str, bytes]]
    schema_id: int
    value: dict[str, Any]
    raw_value: bytes | None = None
    #: Kafka topic id of the source topic (its incarnation); None when unknown.
    topic_id: str | None = None
    #: The value's Avro schema as written (needed to re-encode it byte for byte).
    value_schema: Schema | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        """``topic[partition]@offset``."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def to_datum(self) -> dict[str, Any]:
        """The envelope record written to an archive file."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key,
            "headers": [{"name": k, "value": v} for k, v in self.headers],
            "schema_id": self.schema_id,
            "value": self.value,
            "raw_value": self.raw_value,
            "topic_id": self.topic_id,
        }

    @classmethod
    def from_datum(cls, datum: dict[str, Any], value_schema: Schema | None) -> ArchivedMessage:
        """Back from an envelope record read from a file."""
        return cls(
            topic=datum["topic"],
            partition=datum["partition"],
            offset=datum["offset"],
            timestamp_ms=datum["timestamp_ms"],
            key=datum["key"],
            headers=[(h["name"], h["value"]) for h in datum["headers"]],
            schema_id=datum["schema_id"],
            value=datum["value"],
            raw_value=datum.get("raw_value"),
            topic_id=datum.get("topic_id"),
            value_schema=value_schema,
        )
