"""Reading the archive back: every complete file of a topic, in offset order, filtered
by partition, offset range and timestamp range.

Ranges are half-open: ``from_offset`` / ``since_ms`` inclusive, ``to_offset`` /
``until_ms`` exclusive. A topic recreated under the same name (a new incarnation, see
:mod:`recsys.archive.incarnations`) starts its offsets again: its messages follow those
of the earlier incarnations, and offset ranges apply within each. The writer archives
each offset once; the reader still drops an offset it has already yielded for a partition
of an incarnation (defensive, O(1) memory), so copies made by hand or by two writers
sharing a folder cannot double-count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastavro import reader as avro_reader

from recsys.archive.layout import list_files
from recsys.archive.message import ArchivedMessage

__all__ = ["read_archive", "read_avro_file"]


def _value_schema(writer_schema: Any) -> Any:
    for field in writer_schema["fields"]:
        if field["name"] == "value":
            return field["type"]
    raise ValueError("not an archive file: no 'value' field in its schema")


def read_avro_file(path: Path) -> Iterator[ArchivedMessage]:
    """Every message of one archive (or export) file."""
    with Path(path).open("rb") as fo:
        records = avro_reader(fo)
        value_schema = _value_schema(records.writer_schema)
        for datum in records:
            assert isinstance(datum, dict)
            yield ArchivedMessage.from_datum(datum, value_schema)


def read_archive(
    root: Path,
    topic: str,
    *,
    partitions: set[int] | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[ArchivedMessage]:
    """Archived messages of ``topic`` in (incarnation, partition, offset) order, within
    the ranges."""
    last_seen: dict[tuple[int, int], int] = {}
    for file in list_files(root, topic, partitions):
        if to_offset is not None and file.first_offset >= to_offset:
            continue
        if from_offset is not None and file.last_offset < from_offset:
            continue
        for message in read_avro_file(file.path):
            where = (file.epoch, message.partition)
            if message.offset <= last_seen.get(where, -1):
                continue
            last_seen[where] = message.offset
            if from_offset is not None and message.offset < from_offset:
                continue
            if to_offset is not None and message.offset >= to_offset:
                continue
            if since_ms is not None and message.timestamp_ms < since_ms:
                continue
            if until_ms is not None and message.timestamp_ms >= until_ms:
                continue
            yield message
