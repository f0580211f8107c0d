"""Which incarnation of a topic each archive file belongs to.

Kafka offsets are positions in one *incarnation* of a topic: delete a topic and create it
again under the same name, or start the embedded broker again (it keeps topics in
memory), and offsets begin at 0 once more. The archive names the offsets it holds in its
file names, so it must also name their incarnation, or it would take the new
incarnation's records for ones it already has and skip them.

Each topic folder holds ``incarnations.json``: the incarnations seen so far, in the
order they were first archived, each an *epoch* number (0, 1, 2, …) with its Kafka
topic id. Files of epoch 0 keep the original name ``p<partition>-<first>-<last>.avro``
(archives written before incarnations were recorded are epoch 0); later epochs are
``e<epoch>-p<partition>-<first>-<last>.avro``. The manifest is replaced atomically
(written aside, synced, renamed, folder synced).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from recsys.archive.layout import fsync_dir, topic_dir

__all__ = ["MANIFEST", "Incarnation", "load_incarnations", "record_incarnation"]

MANIFEST = "incarnations.json"


@dataclass(frozen=True)
class Incarnation:
    """One incarnation of a topic in the archive."""

    epoch: int
    #: The Kafka topic id (None: archived from a broker that reports none).
    topic_id: str | None
    #: When the archive first saw it (UTC, ISO 8601).
    recorded_at: str


def load_incarnations(root: Path, topic: str) -> list[Incarnation]:
    """The topic's incarnations in epoch order (empty when none was recorded)."""
    path = topic_dir(root, topic) / MANIFEST
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    found = [Incarnation(**entry) for entry in data["incarnations"]]
    return sorted(found, key=lambda i: i.epoch)


def record_incarnation(root: Path, topic: str, epoch: int, topic_id: str | None) -> Incarnation:
    """Add an incarnation to the topic's manifest, durably; return it."""
    folder = topic_dir(root, topic)
    created = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if created:
        fsync_dir(folder.parent)
    known = [i for i in load_incarnations(root, topic) if i.epoch != epoch]
    entry = Incarnation(epoch, topic_id, datetime.now(UTC).isoformat(timespec="seconds"))
    known.append(entry)
    body = json.dumps(
        {"topic": topic, "incarnations": [asdict(i) for i in sorted(known, key=lambda i: i.epoch)]},
        indent=1,
    )
    tmp = folder / f".{MANIFEST}.tmp"
    with tmp.open("w") as fo:
        fo.write(body)
        fo.flush()
        os.fsync(fo.fileno())
    os.rename(tmp, folder / MANIFEST)
    fsync_dir(folder)
    return entry
