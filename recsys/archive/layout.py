"""Where archive files live and what their names mean.

``<root>/<topic>/<YYYY-MM-DD>/p<partition>-<first offset>-<last offset>.avro``: the
date is the UTC day of the first record's Kafka timestamp, and the name states the
first and last offsets inside (records in offset order; offsets of dead-lettered
messages are absent), so the highest archived offset of a partition is known from a
directory listing alone (that is how the writer skips re-delivered
records after a crash). Files being written live under ``<root>/.inprogress/`` and
only appear under their topic folder, complete and synced, by an atomic rename.

Offsets belong to one incarnation of a topic (:mod:`recsys.archive.incarnations`):
files of a later incarnation (epoch ≥ 1) are named ``e<epoch>-p<partition>-…``, and
files sort by epoch, then partition, then offset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "INPROGRESS_DIR",
    "ArchiveFile",
    "archived_topics",
    "day_of",
    "file_name",
    "fsync_dir",
    "inprogress_dir",
    "list_files",
    "topic_dir",
]

INPROGRESS_DIR = ".inprogress"
_FILE = re.compile(r"^(?:e(\d+)-)?p(\d+)-(\d+)-(\d+)\.avro$")


@dataclass(frozen=True, order=True)
class ArchiveFile:
    """One complete archive file and the offset range its name promises."""

    #: The incarnation of the topic its offsets belong to (0: the first archived).
    epoch: int
    partition: int
    first_offset: int
    last_offset: int
    path: Path


def file_name(partition: int, first_offset: int, last_offset: int, epoch: int = 0) -> str:
    """``p0003-000000000120-000000000245.avro`` (zero-padded so names sort by offset),
    prefixed ``e0001-`` for later incarnations of the topic."""
    name = f"p{partition:04d}-{first_offset:012d}-{last_offset:012d}.avro"
    return f"e{epoch:04d}-{name}" if epoch else name


def day_of(timestamp_ms: int) -> str:
    """UTC day (``YYYY-MM-DD``) of a Kafka timestamp in milliseconds."""
    return datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, tz=UTC).strftime("%Y-%m-%d")


def topic_dir(root: Path, topic: str) -> Path:
    """Folder of one topic's files."""
    return Path(root) / topic


def inprogress_dir(root: Path, topic: str) -> Path:
    """Folder of the files being written for ``topic`` (never read by readers)."""
    return Path(root) / INPROGRESS_DIR / topic


def list_files(
    root: Path, topic: str, partitions: set[int] | None = None, epoch: int | None = None
) -> list[ArchiveFile]:
    """Complete files of ``topic`` (of one incarnation when ``epoch`` is given), ordered
    by epoch, partition, first offset."""
    base = topic_dir(root, topic)
    if not base.is_dir():
        return []
    out = []
    for day in base.iterdir():
        if not day.is_dir():
            continue
        for path in day.iterdir():
            match = _FILE.match(path.name)
            if not match:
                continue
            number, partition, first, last = match.groups()
            found = ArchiveFile(int(number or 0), int(partition), int(first), int(last), path)
            if (partitions is None or found.partition in partitions) and (
                epoch is None or found.epoch == epoch
            ):
                out.append(found)
    out.sort()
    return out


def archived_topics(root: Path) -> list[str]:
    """Topics that have a folder in the archive."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
