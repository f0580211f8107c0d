"""Exporting messages to Avro, Parquet or CSV.

Avro keeps the archive's envelope (coordinates, headers, nested value) and can be read
back with :func:`recsys.archive.read_avro_file`. Parquet and CSV get one row per message:
the coordinates, then the value's fields as columns — nested values stay nested in
Parquet (lists and structs) and become JSON text in CSV.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.write import Writer

from recsys.archive.message import ArchivedMessage, envelope_schema

__all__ = ["EXPORT_FORMATS", "export_messages", "flatten"]

EXPORT_FORMATS = ("avro", "parquet", "csv")
COORDINATES = ("topic", "partition", "offset", "timestamp_ms", "key")


def _plain(value: Any) -> Any:
    """Enums to their value, recursively (pyarrow and json want plain types)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def flatten(message: ArchivedMessage) -> dict[str, Any]:
    """One row: coordinates, then the value's fields (a field named like a coordinate
    gets a ``value_`` prefix)."""
    row: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "key": message.key,
    }
    for name, value in message.value.items():
        row[f"value_{name}" if name in row else name] = _plain(value)
    return row


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=False)
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def export_messages(messages: Iterable[ArchivedMessage], path: Path, fmt: str) -> int:
    """Write ``messages`` to ``path`` in ``fmt`` (avro, parquet, csv); return the count."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "avro":
        return _export_avro(messages, path)
    rows = [flatten(m) for m in messages]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        columns: list[str] = []
        for row in rows:
            columns.extend(c for c in row if c not in columns)
        with path.open("w", newline="", encoding="utf-8") as fo:
            out = csv.DictWriter(fo, fieldnames=columns or list(COORDINATES))
            out.writeheader()
            for row in rows:
                out.writerow({c: _csv_cell(row.get(c)) for c in columns})
    return len(rows)


def _export_avro(messages: Iterable[ArchivedMessage], path: Path) -> int:
    count = 0
    writer: Any = None
    with path.open("wb") as fo:
        for message in messages:
            if writer is None:
                if message.value_schema is None:
                    raise ValueError(f"{message.source} has no value schema to export with")
                schema = parse_schema(envelope_schema(message.value_schema), _write_hint=False)
                writer = Writer(fo, schema, codec="deflate")
            writer.write(message.to_datum())
            count += 1
        if writer is not None:
            writer.flush()
    if writer is None:
        path.unlink()  # nothing to export: no schema to write an empty file with
    return count
