"""Worker `archive`: logged topics → rolling Avro files under ``archive_root``.

Consumes rec.responses, rec.llm-log, feedback.examples (plus rec.requests when
``archive_requests``, user.events when ``archive_user_events``) and appends each
message, with its Kafka coordinates, to its partition's open file
(:class:`recsys.archive.ArchiveWriter`). Files roll by size, age and UTC day, are
fsynced and renamed into place atomically; consumer offsets are committed only up to
the first record that is not yet in a synced file. After a crash, re-delivered records
already in a file are skipped (the file names state their offset ranges), so every
record is archived exactly once and no file under a topic folder is ever partial.
One archive worker per archive root (or a shared file system for several).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from recsys.archive import ArchiveWriter
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.topics import TopicSpec
from streams.wire import archived_from_inbound
from workers.bootstrap import Context
from workers.inventory import worker_inputs

__all__ = ["ArchiveWorker", "archived_topics", "run"]

log = logging.getLogger(__name__)


def archived_topics(ctx: Context) -> list[TopicSpec]:
    """The topics this deployment archives."""
    return worker_inputs(ctx.settings, ctx.topics)["archive"]


@dataclass(frozen=True)
class ArchiveWorker:
    """What a running archive worker exposes (tests, benchmarks)."""

    writer: ArchiveWriter
    loop: ConsumerLoop


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Archive until ``stop`` is set; finalize open files on the way out."""
    s = ctx.settings
    specs = {spec.name: spec for spec in archived_topics(ctx)}
    writer = ArchiveWriter(s.archive_root, roll_bytes=s.archive_roll_bytes, roll_s=s.archive_roll_s)
    for spec in specs.values():
        assert spec.value is not None
        writer.register(spec.name, ctx.serde.codec(spec.value).schema)

    def write(batch: list[Inbound[Any]]) -> None:
        for inbound in batch:
            writer.write(archived_from_inbound(inbound, ctx.serde))
        writer.roll_due()

    async def handler(batch: list[Inbound[Any]]) -> None:
        await asyncio.to_thread(write, batch)

    async def housekeeping(final: bool) -> None:
        await asyncio.to_thread(writer.close if final else writer.roll_due)

    def revoked(tps: list[tuple[str, int]]) -> None:
        writer.finalize(tps)  # durable now, so the partition's next owner skips them

    loop = ConsumerLoop(
        s,
        worker="archive",
        inputs=list(specs.values()),
        handler=handler,
        producer=ctx.producer,
        group_id=ctx.overrides.group_id,
        committable=writer.committable,
        housekeeping=housekeeping,
        consumer_overrides={"fetch.wait.max.ms": s.background_fetch_wait_ms},
        on_revoke=revoked,
    )
    ctx.handles.put(ArchiveWorker(writer, loop))
    log.info("archive: %s → %s", ", ".join(specs), s.archive_root)
    try:
        await loop.run(stop)
    finally:
        writer.close()
        log.info("archive: %s", writer.stats)
