"""The enrich worker's write mode: online, or a backfill that ends once the group is caught up.

``STREAMREC_ENRICH_MODE=backfill`` on an empty item store (or one whose backfill was
interrupted) drops the vector indexes through ``items_begin_backfill()``
(:class:`recsys.items.backfill.VectorIndexes`), and the worker loads catalog.changes with
its ordinary versioned writes. It finishes when the consumer loop has been idle for
:data:`IDLE_S` and the group's committed offsets reach the end of catalog.changes (the
exact, Tansu-corrected lag of :func:`streams.lag.group_lag`, asked at most every
:data:`CHECK_EVERY_S` and only while a backfill is on): then ``items_finish_backfill()``
builds both HNSW indexes and records online mode in one transaction, and the same
worker goes on online. Offsets are committed after every batch as always — the rows are
durable before the index exists — so a crash at any point replays at most the batch in
flight, and the next start finishes what is left (see the module above).

Every other start is online; one that finds an interrupted backfill builds the indexes
before it consumes anything.
"""

from __future__ import annotations

import asyncio
import logging
import time

from recsys.items.backfill import StoreMode, VectorIndexes
from streams.lag import group_lag
from streams.settings import Settings

__all__ = ["CHECK_EVERY_S", "IDLE_S", "WriteMode", "max_poll_interval_ms"]

log = logging.getLogger(__name__)

#: Idle time (no batch) before the group's lag is asked for.
IDLE_S = 1.0
#: At most one lag query per this many seconds while a backfill waits to finish.
CHECK_EVERY_S = 2.0


def max_poll_interval_ms(build_timeout_s: float) -> int:
    """``max.poll.interval.ms`` for a backfilling consumer: the index build runs between
    two polls, so the group must not evict the worker while it builds."""
    return int(max(300.0, build_timeout_s + 120.0) * 1000)


class WriteMode:
    """Whether the worker is backfilling, and the switch back to online."""

    def __init__(self, indexes: VectorIndexes, settings: Settings, topic: str) -> None:
        self.indexes = indexes
        self.settings = settings
        self.topic = topic
        #: The consumer group whose lag decides when a backfill is over (the loop's).
        self.group = ""
        #: True while loading without vector indexes.
        self.backfilling = False
        #: Seconds the index build took when this worker finished a backfill.
        self.build_s: float | None = None
        self._idle_since: float | None = None
        self._checked_at = 0.0

    async def start(self) -> None:
        """Enter the configured mode (or finish an interrupted backfill first)."""
        if self.settings.enrich_mode == "backfill":
            self.backfilling = await self.indexes.begin_backfill()
            if self.backfilling:
                log.info(
                    "enrich: backfill: loading with no vector index until caught up, then "
                    "building the HNSW indexes once"
                )
            else:
                log.warning(
                    "enrich: backfill asked for, but the item store holds items: writing "
                    "online (a backfill drops the vector indexes, so only an empty store gets one)"
                )
            return
        if await self.indexes.mode() is StoreMode.BACKFILL:
            log.warning("enrich: an interrupted backfill: building the vector indexes first")
            await self._finish()

    def batch_seen(self) -> None:
        """A batch came in: the worker is not idle."""
        self._idle_since = None

    async def idle(self, final: bool) -> None:
        """The loop found nothing to consume (consumer-loop housekeeping)."""
        if not self.backfilling:
            return
        if final:
            log.warning(
                "enrich: stopped during a backfill; the next start finishes it (backfill: "
                "goes on loading; online: builds the vector indexes first)"
            )
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < IDLE_S or now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        lags = await asyncio.to_thread(group_lag, self.settings, self.group, [self.topic])
        if lags and all(lag.lag == 0 for lag in lags):
            await self._finish()

    async def _finish(self) -> None:
        started = time.perf_counter()
        finished = await self.indexes.finish_backfill()
        self.build_s = time.perf_counter() - started
        self.backfilling = False
        log.info(
            "enrich: %s; vector indexes built in %.1f s, writing online",
            "backfill finished" if finished else "the store was online already",
            self.build_s,
        )
