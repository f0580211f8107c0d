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

Offsets are compared within one incarnation of the topic only: a message whose Kafka
topic id the archive has not seen before starts a new epoch
(:mod:`recsys.archive.incarnations`, logged at WARNING), whose files are named apart, so
a topic recreated under the same name — or the in-memory embedded broker started again
— is archived from its offset 0 instead of being skipped as already archived. An archive
written before incarnations were recorded is adopted as epoch 0 when the first message
continues it (its offset is past the archived ones, or the archived record at that
offset is the same message); otherwise the new topic gets epoch 1.
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

from recsys.archive.incarnations import load_incarnations, record_incarnation
from recsys.archive.layout import (
    ArchiveFile,
    day_of,
    file_name,
    fsync_dir,
    inprogress_dir,
    list_files,
    topic_dir,
)
from recsys.archive.message import ArchivedMessage, envelope_schema
from recsys.archive.reader import read_avro_file

__all__ = ["ArchiveWriter", "WriterStats"]

log = logging.getLogger(__name__)

TP = tuple[str, int]


@dataclass
class WriterStats:
    """What the writer did (shown by the demo and logged at shutdown)."""

    written: int = 0
    skipped: int = 0
    files: int = 0
    #: New incarnations of a topic met (a topic recreated, an empty broker restarted).
    incarnations: int = 0


@dataclass
class _OpenFile:
    topic: str
    partition: int
    epoch: int
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
        #: Current (topic id, epoch) per topic.
        self._epochs: dict[str, tuple[str | None, int]] = {}
        self._lock = threading.RLock()

    def register(self, topic: str, value_schema: dict[str, Any]) -> None:
        """Declare the value schema of a topic before writing its messages."""
        self._schemas[topic] = parse_schema(envelope_schema(value_schema), _write_hint=False)

    # ---- writing ----------------------------------------------------------------------
    def write(self, message: ArchivedMessage) -> bool:
        """Append one message; False when it was archived already (a re-delivery)."""
        tp = (message.topic, message.partition)
        with self._lock:
            epoch = self._epoch_of(message)
            if message.offset <= self._last_offset(tp, epoch):
                self.stats.skipped += 1
                return False
            day = day_of(message.timestamp_ms)
            current = self._open.get(tp)
            if current is not None and (current.day != day or current.epoch != epoch):
                self._finalize(tp)
                current = None
            if current is None:
                current = self._open_file(message, day, epoch)
            current.writer.write(message.to_datum())
            current.last_offset = message.offset
            self._last_written[tp] = message.offset
            self.stats.written += 1
            if current.approx_bytes() >= self.roll_bytes:
                self._finalize(tp)
            return True

    # ---- incarnations ------------------------------------------------------------------
    def _epoch_of(self, message: ArchivedMessage) -> int:
        """The epoch of the message's topic incarnation, recorded when it is new."""
        topic, topic_id = message.topic, message.topic_id
        known = self._epochs.get(topic)
        if known is not None and (known[0] == topic_id or topic_id is None):
            return known[1]
        recorded = load_incarnations(self.root, topic)
        match = [i for i in recorded if i.topic_id == topic_id]
        if match:
            epoch = match[0].epoch
        elif topic_id is None:  # a broker without topic ids: the latest incarnation
            epoch = recorded[-1].epoch if recorded else 0
        elif recorded:
            epoch = recorded[-1].epoch + 1
            self._new_incarnation(message, epoch, f"topic id {recorded[-1].topic_id}")
        elif not list_files(self.root, topic) or self._continues_legacy(message):
            epoch = 0
            record_incarnation(self.root, topic, 0, topic_id)
        else:
            epoch = 1
            self._new_incarnation(message, epoch, "the archive's unrecorded one")
        if known is not None and known[1] != epoch:
            for tp in [tp for tp in self._open if tp[0] == topic]:
                self._finalize(tp)
        for tp in [tp for tp in self._last_written if tp[0] == topic]:
            del self._last_written[tp]
        self._epochs[topic] = (topic_id, epoch)
        return epoch

    def _new_incarnation(self, message: ArchivedMessage, epoch: int, was: str) -> None:
        record_incarnation(self.root, message.topic, epoch, message.topic_id)
        self.stats.incarnations += 1
        log.warning(
            "archive: %s is a new incarnation of the topic (topic id %s, not %s): it was "
            "recreated, or the embedded broker started again with empty topics; its offsets "
            "start again, archived as epoch %d beside the earlier ones",
            message.topic,
            message.topic_id,
            was,
            epoch,
        )

    def _continues_legacy(self, message: ArchivedMessage) -> bool:
        """Whether ``message`` belongs to the incarnation of the unrecorded archive."""
        files = list_files(self.root, message.topic, {message.partition}, epoch=0)
        if message.offset > max((f.last_offset for f in files), default=-1):
            return True
        holding: list[ArchiveFile] = [
            f for f in files if f.first_offset <= message.offset <= f.last_offset
        ]
        for file in holding:
            for old in read_avro_file(file.path):
                if old.offset == message.offset:
                    return (old.timestamp_ms, old.key, old.headers) == (
                        message.timestamp_ms,
                        message.key,
                        message.headers,
                    )
        return False

    def _last_offset(self, tp: TP, epoch: int) -> int:
        """Last offset written for ``tp`` in ``epoch``: from memory, else from the file
        names."""
        last = self._last_written.get(tp)
        if last is None:
            topic, partition = tp
            files = list_files(self.root, topic, {partition}, epoch=epoch)
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

    def _open_file(self, message: ArchivedMessage, day: str, epoch: int) -> _OpenFile:
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
            epoch=epoch,
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
        final = final_dir / file_name(
            current.partition, current.first_offset, current.last_offset, current.epoch
        )
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
