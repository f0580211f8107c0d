"""Rolling, crash-safe writer of archive files.

One open file per (topic, partition), written under ``.inprogress/`` and rolled — by
size, by age, at a UTC day boundary, on revoke and at shutdown — by flushing, fsyncing,
renaming it atomically into ``<topic>/<day>/`` and fsyncing that folder. A file under a
topic folder is therefore always complete.

Exactly once: a record whose offset is at or below the last offset already written for
its partition (by this process, or by an earlier one, read from the file names) is
skipped, so records re-delivered after a crash are not archived twice. Offsets of the
open file are not durable yet; :meth:`ArchiveWriter.committable` holds the consumer's
commits back to the first of them, so a crash loses no record either. Leftover
``.inprogress`` files of a crashed process are deleted when their partition is first
written again (their records are re-delivered because they were never committed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastavro import parse_schema
from fastavro.write import Writer

from recsys.archive.layout import (
    day_of,
    file_name,
    fsync_dir,
    inprogress_dir,
    list_files,
    topic_dir,
)
from recsys.archive.message import ArchivedMessage, envelope_schema

__all__ = ["ArchiveWriter", "WriterStats"]

log = logging.getLogger(__name__)

TP = tuple[str, int]


@dataclass
class WriterStats:
    """What the writer did (shown by the demo and logged at shutdown)."""

    written: int = 0
    skipped: int = 0
    files: int = 0


@dataclass
class _OpenFile:
    topic: str
    partition: int
    day: str
    first_offset: int
    last_offset: int
    tmp_path: Path
    fo: BinaryIO
    writer: Any
    header_bytes: int
    opened_at: float

    def approx_bytes(self) -> int:
        """Bytes of data written so far (blocks on disk + the uncompressed buffer)."""
        return self.fo.tell() - self.header_bytes + self.writer.io.tell()


class ArchiveWriter:
    """Appends messages to per-partition files and rolls them durably; thread-safe."""

    def __init__(
        self,
        root: Path,
        *,
        roll_bytes: int,
        roll_s: float,
        codec: str = "deflate",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.roll_bytes = roll_bytes
        self.roll_s = roll_s
        self.codec = codec
        self.clock = clock
        self.stats = WriterStats()
        self._schemas: dict[str, Any] = {}
        self._open: dict[TP, _OpenFile] = {}
        self._last_written: dict[TP, int] = {}
        self._lock = threading.RLock()

    def register(self, topic: str, value_schema: dict[str, Any]) -> None:
        """Declare the value schema of a topic before writing its messages."""
        self._schemas[topic] = parse_schema(envelope_schema(value_schema), _write_hint=False)

    # ---- writing ----------------------------------------------------------------------
    def write(self, message: ArchivedMessage) -> bool:
        """Append one message; False when it was archived already (a re-delivery)."""
        tp = (message.topic, message.partition)
        with self._lock:
            if message.offset <= self._last_offset(tp):
                self.stats.skipped += 1
                return False
            day = day_of(message.timestamp_ms)
            current = self._open.get(tp)
            if current is not None and current.day != day:
                self._finalize(tp)
                current = None
            if current is None:
                current = self._open_file(message, day)
            current.writer.write(message.to_datum())
            current.last_offset = message.offset
            self._last_written[tp] = message.offset
            self.stats.written += 1
            if current.approx_bytes() >= self.roll_bytes:
                self._finalize(tp)
            return True

    def _last_offset(self, tp: TP) -> int:
        """Last offset written for ``tp``: from memory, else from the file names."""
        last = self._last_written.get(tp)
        if last is None:
            topic, partition = tp
            files = list_files(self.root, topic, {partition})
            last = max((f.last_offset for f in files), default=-1)
            self._remove_stale(tp)
            self._last_written[tp] = last
        return last

    def _remove_stale(self, tp: TP) -> None:
        topic, partition = tp
        folder = inprogress_dir(self.root, topic)
        if not folder.is_dir():
            return
        for path in folder.glob(f"p{partition:04d}-*.part"):
            log.info("removing unfinished archive file %s (its records are re-read)", path)
            path.unlink()

    def _open_file(self, message: ArchivedMessage, day: str) -> _OpenFile:
        schema = self._schemas.get(message.topic)
        if schema is None:
            raise KeyError(f"no value schema registered for topic {message.topic!r}")
        folder = inprogress_dir(self.root, message.topic)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"p{message.partition:04d}-{message.offset:012d}.part"
        fo = tmp.open("wb")
        sync_interval = max(1024, min(64 * 1024, self.roll_bytes // 4))
        writer = Writer(fo, schema, codec=self.codec, sync_interval=sync_interval)
        opened = _OpenFile(
            topic=message.topic,
            partition=message.partition,
            day=day,
            first_offset=message.offset,
            last_offset=message.offset,
            tmp_path=tmp,
            fo=fo,
            writer=writer,
            header_bytes=fo.tell(),
            opened_at=self.clock(),
        )
        self._open[(message.topic, message.partition)] = opened
        return opened

    # ---- rolling ----------------------------------------------------------------------
    def _finalize(self, tp: TP) -> Path | None:
        current = self._open.pop(tp, None)
        if current is None:
            return None
        current.writer.flush()
        current.fo.flush()
        os.fsync(current.fo.fileno())
        current.fo.close()
        final_dir = topic_dir(self.root, current.topic) / current.day
        if not final_dir.is_dir():
            final_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(final_dir.parent)
            fsync_dir(final_dir.parent.parent)
        final = final_dir / file_name(current.partition, current.first_offset, current.last_offset)
        os.rename(current.tmp_path, final)
        fsync_dir(final_dir)
        fsync_dir(current.tmp_path.parent)
        self.stats.files += 1
        log.debug("archived %s", final)
        return final

    def roll_due(self) -> list[Path]:
        """Finalize files older than ``roll_s``."""
        with self._lock:
            now = self.clock()
            due = [tp for tp, f in self._open.items() if now - f.opened_at >= self.roll_s]
            return [p for tp in due if (p := self._finalize(tp)) is not None]

    def finalize(self, partitions: Iterable[TP]) -> list[Path]:
        """Finalize the open files of some partitions (revoked ones) and forget them."""
        with self._lock:
            out = []
            for tp in partitions:
                path = self._finalize(tp)
                if path is not None:
                    out.append(path)
                self._last_written.pop(tp, None)
            return out

    def close(self) -> list[Path]:
        """Finalize every open file."""
        with self._lock:
            return [p for tp in list(self._open) if (p := self._finalize(tp)) is not None]

    # ---- commits ----------------------------------------------------------------------
    def committable(self, positions: dict[TP, int]) -> dict[TP, int]:
        """Hold each partition's next offset back to the first record not yet durable."""
        with self._lock:
            out = {}
            for tp, next_offset in positions.items():
                current = self._open.get(tp)
                out[tp] = (
                    min(next_offset, current.first_offset) if current is not None else next_offset
                )
            return out

    def open_files(self) -> list[TP]:
        """Partitions with a file being written."""
        with self._lock:
            return list(self._open)
