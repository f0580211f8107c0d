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
    "ArchivedRun",
    "archived_runs",
    "archived_topics",
    "day_of",
    "file_name",
    "fsync_dir",
    "inprogress_dir",
    "list_files",
    "other_runs_hint",
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


@dataclass(frozen=True)
class ArchivedRun:
    """Archived files of one topic under one topic-name prefix (one run of a stack)."""

    prefix: str
    topic: str
    records: int
    last_written: datetime


def archived_runs(root: Path, base_topic: str) -> list[ArchivedRun]:
    """Every prefix under which ``base_topic`` (e.g. ``rec.responses``) has complete
    files, the most recently written first — ``demo-<n>.`` for each `streamrec demo`."""
    out = []
    for topic in archived_topics(root):
        if topic != base_topic and not topic.endswith("." + base_topic):
            continue
        files = list_files(root, topic)
        if files:
            out.append(
                ArchivedRun(
                    prefix=topic[: len(topic) - len(base_topic)],
                    topic=topic,
                    records=sum(f.last_offset - f.first_offset + 1 for f in files),
                    last_written=datetime.fromtimestamp(
                        max(f.path.stat().st_mtime for f in files), tz=UTC
                    ),
                )
            )
    return sorted(out, key=lambda r: r.last_written, reverse=True)


def other_runs_hint(root: Path, base_topic: str, prefix: str, command: str) -> str:
    """A sentence naming the runs archived under other prefixes, and how to read one
    (empty when there are none)."""
    runs = [r for r in archived_runs(root, base_topic) if r.prefix != prefix]
    if not runs:
        return ""
    listed = ", ".join(
        f"{r.prefix or '(no prefix)'} ({r.records} messages, last written "
        f"{r.last_written:%Y-%m-%d %H:%M} UTC)"
        for r in runs[:5]
    )
    more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
    return (
        f"; the archive holds {base_topic} of other runs: {listed}{more} — e.g. "
        f"`{command} --topic-prefix {runs[0].prefix}`"
    )


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
