"""The Avro archive of logged topics: rolling object-container files, one folder per
topic and day, each file holding a contiguous offset range of one partition.

Pure file I/O (fastavro), no Kafka: a data scientist reads the archive with
:func:`read_archive` (or any Avro tool) without a broker. The archive worker writes it
with :class:`ArchiveWriter`; ``streamrec replay`` reads it back.
"""

from recsys.archive.export import EXPORT_FORMATS, export_messages, flatten
from recsys.archive.layout import (
    ArchivedRun,
    ArchiveFile,
    archived_runs,
    archived_topics,
    list_files,
    other_runs_hint,
)
from recsys.archive.message import ArchivedMessage, envelope_schema
from recsys.archive.reader import read_archive, read_avro_file
from recsys.archive.writer import ArchiveWriter

__all__ = [
    "EXPORT_FORMATS",
    "ArchiveFile",
    "ArchiveWriter",
    "ArchivedMessage",
    "ArchivedRun",
    "archived_runs",
    "archived_topics",
    "envelope_schema",
    "export_messages",
    "flatten",
    "list_files",
    "other_runs_hint",
    "read_archive",
    "read_avro_file",
]
