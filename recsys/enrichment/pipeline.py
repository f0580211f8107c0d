"""Nearline enrichment of a batch of catalog changes: the one call the enrich worker makes.

For each item (the newest change of it in the batch):

1. a version not newer than the stored one changes nothing (replays, late arrivals) —
   except that the very change already stored (same version and change id) is announced
   again, since a crash may have come between its write and the commit;
2. a delete writes a tombstone: the item is ineligible at once, its row stays;
3. an upsert whose content hash equals the stored one only moves the version
   (``UNCHANGED``: no LLM call, no embedding);
4. otherwise: LLM enrichment (cache, deadline, fallback to raw text) → raw-text and
   enriched-text embeddings, micro-batched across the whole batch → versioned writes
   in chunks (each atomic), each chunk written while the next items are embedded.

It returns one :class:`~recsys.records.ItemEnriched` per applied (or re-announced)
write, after all writes; LLM involvement records go to ``emit`` as they happen.
Postgres trouble raises :class:`~recsys.exceptions.DatabaseUnavailable` once the writes
in flight are over, so the caller can retry the same batch (the versioned writes make
that safe); LLM trouble never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.embedding import Embedder
from recsys.enrichment.batching import MicroBatcher
from recsys.enrichment.enricher import Enricher, EnrichOutcome, LogSink
from recsys.enrichment.events import item_event
from recsys.enrichment.text import content_hash, enriched_text, raw_text
from recsys.exceptions import ConfigurationError
from recsys.items import ItemRecord, ItemState, ItemStore, ItemWrite, Tombstone, VersionBump
from recsys.records import (
    CatalogChange,
    ChangeOp,
    EnrichmentStatus,
    ItemEnriched,
    LlmInvolvement,
    LlmUseCase,
    utcnow,
)

__all__ = ["EnrichmentPipeline", "PipelineStats", "latest_changes"]

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """Counters over the pipeline's lifetime."""

    changes: int = 0
    stale: int = 0
    written: int = 0
    reannounced: int = 0
    #: Wall seconds inside item-store writes (they overlap with embedding).
    write_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)


def latest_changes(changes: Sequence[CatalogChange]) -> dict[str, CatalogChange]:
    """The newest change per item (a later message wins a version tie)."""
    latest: dict[str, CatalogChange] = {}
    for change in changes:
        current = latest.get(change.item_id)
        if current is None or change.version >= current.version:
            latest[change.item_id] = change
    return latest


def _raw(change: CatalogChange) -> str:
    return raw_text(change.title, change.categories, change.description)


class _ChunkWriter:
    """Applies writes in chunks, one chunk at a time, while the caller goes on."""

    def __init__(self, store: ItemStore, chunk: int, stats: PipelineStats) -> None:
        self.store = store
        self.chunk = chunk
        self.stats = stats
        self._pending: list[ItemWrite] = []
        self._tasks: list[asyncio.Task[set[str]]] = []
        self._lock = asyncio.Lock()

    def add(self, write: ItemWrite) -> None:
        self._pending.append(write)
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._tasks.append(asyncio.ensure_future(self._apply(batch)))

    async def _apply(self, batch: list[ItemWrite]) -> set[str]:
        async with self._lock:
            started = time.perf_counter()
            try:
                return await self.store.apply(batch)
            finally:
                self.stats.write_s += time.perf_counter() - started

    async def finish(self) -> set[str]:
        """Apply what is left; wait for every chunk; the ids applied (or the first error)."""
        self._flush()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        applied: set[str] = set()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            applied |= result
        return applied


class EnrichmentPipeline:
    """Catalog changes → enriched, embedded, versioned item rows."""

    def __init__(
        self,
        store: ItemStore,
        embedder: Embedder,
        enricher: Enricher,
        *,
        batch_size: int = 64,
        batch_wait_s: float = 0.2,
        deadline_s: float = 20.0,
        write_chunk: int | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.enricher = enricher
        self.deadline_s = deadline_s
        #: Items per write (one transaction each); a write runs while later items embed.
        self.write_chunk = write_chunk or max(64, batch_size)
        self.stats = PipelineStats()
        self.batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(
            self._embed, max_size=batch_size, max_wait_s=batch_wait_s
        )

    async def check(self) -> None:
        """Refuse an embedder whose dimension differs from the store's vectors.

        Raises:
            ConfigurationError: the dimensions differ (a new model needs a migration).
        """
        want, have = await self.store.dimension(), self.embedder.dim
        if want != have:
            raise ConfigurationError(
                f"embedding model {self.embedder.name} makes {have}-d vectors but the item "
                f"store holds {want}-d ones: use a {want}-d model or migrate the items table"
            )

    async def _embed(self, texts: list[str]) -> list[np.ndarray]:
        vectors = await asyncio.get_running_loop().run_in_executor(None, self.embedder.embed, texts)
        return list(vectors)

    async def process(self, changes: Sequence[CatalogChange], emit: LogSink) -> list[ItemEnriched]:
        """Apply a batch of changes; return the events of the writes that applied.

        Items are written in chunks as soon as they are embedded, so Postgres's index
        inserts overlap with the embedding of the next items. A change already applied
        (same version and change id: the batch is being retried, or replayed after a crash
        between the write and the commit) is announced again rather than dropped, so
        ``catalog.enriched`` is at-least-once like everything else.
        """
        self.stats.changes += len(changes)
        latest = latest_changes(changes)
        self.stats.stale += len(changes) - len(latest)  # superseded within the batch
        states = await self.store.states(list(latest))
        deadline = time.monotonic() + self.deadline_s
        quick: list[ItemWrite] = []  # tombstones and version bumps: nothing to embed
        unchanged: set[str] = set()
        again: list[str] = []
        to_build: list[tuple[CatalogChange, str]] = []
        for change in latest.values():
            state = states.get(change.item_id)
            if state is not None and change.version <= state.version:
                if (change.version, change.change_id) == (state.version, state.change_id):
                    again.append(change.item_id)
                else:
                    self.stats.stale += 1
                continue
            if change.op is ChangeOp.DELETE:
                quick.append(
                    Tombstone(change.item_id, change.version, change.change_id, change.occurred_at)
                )
                continue
            digest = content_hash(change)
            if self._unchanged(state, digest):
                quick.append(
                    VersionBump(
                        change.item_id,
                        change.version,
                        change.change_id,
                        change.available,
                        change.occurred_at,
                    )
                )
                unchanged.add(change.item_id)
                emit(
                    LlmInvolvement(
                        request_id=change.change_id,
                        item_id=change.item_id,
                        use_case=LlmUseCase.ENRICH,
                        called=False,
                        used=False,
                        decision="unchanged",
                    )
                )
                continue
            to_build.append((change, digest))
        writer = _ChunkWriter(self.store, self.write_chunk, self.stats)
        for write in quick:
            writer.add(write)
        records: list[ItemRecord] = []
        build_error: Exception | None = None
        try:
            records = await self._build_all(to_build, deadline, emit, writer)
        except Exception as exc:  # finish the writes in flight first
            build_error = exc
        applied = await writer.finish()
        if build_error is not None:
            raise build_error
        writes: list[ItemWrite] = [*quick, *records]
        self.stats.written += len(applied)
        self.stats.stale += len(writes) - len(applied)
        return await self._events(records, applied, unchanged, again)

    def _unchanged(self, state: ItemState | None, digest: str) -> bool:
        return (
            state is not None
            and state.content_hash == digest
            and state.has_vectors
            and state.embedding_model == self.embedder.name
        )

    async def _build_all(
        self,
        items: list[tuple[CatalogChange, str]],
        deadline: float,
        emit: LogSink,
        writer: _ChunkWriter,
    ) -> list[ItemRecord]:
        if not items:
            return []
        enriching = len(items)

        def enriched_one() -> None:
            nonlocal enriching
            enriching -= 1
            if enriching == 0:  # nothing more will be submitted: do not wait for the timer
                self.batcher.flush()

        # raw texts are queued in start order: by length, so that micro-batches hold texts
        # of similar length and pad little (what sentence-transformers does within a call)
        # (the raw text is built once per item: its cleaning is most of its cost)
        by_length = sorted(((_raw(c), c, d) for c, d in items), key=lambda item: len(item[0]))
        tasks = [
            asyncio.ensure_future(self._build(c, d, text, deadline, emit, enriched_one))
            for text, c, d in by_length
        ]
        records: list[ItemRecord] = []
        error: Exception | None = None
        for next_done in asyncio.as_completed(tasks):
            try:
                record = await next_done
            except Exception as exc:  # let the others finish; report the first
                error = error or exc
                continue
            records.append(record)
            writer.add(record)
        self.batcher.flush()
        if error is not None:
            raise error
        return records

    async def _build(
        self,
        change: CatalogChange,
        digest: str,
        text: str,
        deadline: float,
        emit: LogSink,
        enriched_one: Callable[[], None],
    ) -> ItemRecord:
        raw_vector = self.batcher.submit(text)
        enriched_vector: asyncio.Future[np.ndarray] | None = None
        try:
            outcome = await self.enricher.enrich(change, digest, deadline=deadline, emit=emit)
            enrichment = outcome.enrichment
            if enrichment is not None:  # queued before signalling, so a flush includes it
                enriched_vector = self.batcher.submit(
                    enriched_text(
                        change.title,
                        change.categories,
                        enrichment.summary,
                        enrichment.themes,
                        enrichment.mood,
                        enrichment.audience,
                        enrichment.tags,
                    )
                )
        except BaseException:
            raw_vector.cancel()
            raise
        finally:
            enriched_one()
        raw_v = await raw_vector
        # raw text only: the enriched space holds the raw vector (the status says why)
        enriched_v = await enriched_vector if enriched_vector is not None else raw_v
        return self._record(change, digest, outcome, raw_v, enriched_v)

    def _record(
        self,
        change: CatalogChange,
        digest: str,
        outcome: EnrichOutcome,
        raw_vector: np.ndarray,
        enriched_vector: np.ndarray,
    ) -> ItemRecord:
        enrichment = outcome.enrichment
        return ItemRecord(
            item_id=change.item_id,
            version=change.version,
            change_id=change.change_id,
            content_hash=digest,
            title=change.title,
            categories=tuple(change.categories),
            description=change.description,
            attributes=dict(change.attributes),
            available=change.available,
            summary=enrichment.summary if enrichment else None,
            themes=tuple(enrichment.themes) if enrichment else (),
            mood=enrichment.mood if enrichment else None,
            audience=enrichment.audience if enrichment else None,
            tags=tuple(enrichment.tags) if enrichment else (),
            raw_embedding=raw_vector,
            enriched_embedding=enriched_vector,
            embedding_model=self.embedder.name,
            embedding_dim=int(raw_vector.shape[0]),
            prompt_version=outcome.prompt_version,
            llm_model=outcome.llm_model,
            enrichment_status=outcome.status,
            enrichment_error=outcome.error
            if outcome.status is EnrichmentStatus.LLM_FAILED
            else None,
            enriched_at=utcnow(),
            occurred_at=change.occurred_at,
        )

    async def _events(
        self, records: list[ItemRecord], applied: set[str], unchanged: set[str], again: list[str]
    ) -> list[ItemEnriched]:
        """One event per applied write (and per re-announced change), in write order."""
        events = [item_event(r) for r in records if r.item_id in applied]
        built = {r.item_id for r in records}
        from_rows = [i for i in applied if i not in built] + again
        for row in await self.store.get_many(sorted(from_rows)):
            status = EnrichmentStatus.UNCHANGED if row.item_id in unchanged else None
            events.append(item_event(row, status, at=utcnow() if status else None))
        self.stats.reannounced += len(again)
        for event in events:
            self.stats.statuses[str(event.enrichment_status)] += 1
        return events
