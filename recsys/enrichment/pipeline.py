"""Nearline enrichment of a batch of catalog changes: the one call the enrich worker makes.

For each item (the newest change of it in the batch):

1. a version not newer than the stored one changes nothing (replays, late arrivals);
2. a delete writes a tombstone: the item is ineligible at once, its row stays;
3. an upsert whose content hash equals the stored one only moves the version
   (``UNCHANGED``: no LLM call, no embedding);
4. otherwise: LLM enrichment (cache, deadline, fallback to raw text) → raw-text and
   enriched-text embeddings, micro-batched across the whole batch → one atomic,
   versioned write of every item.

It returns one :class:`~recsys.records.ItemEnriched` per applied write, after the
write; LLM involvement records go to ``emit`` as they happen. Postgres trouble raises
:class:`~recsys.exceptions.DatabaseUnavailable` with nothing half-written, so the
caller can retry the same batch; LLM trouble never raises.
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
    statuses: Counter[str] = field(default_factory=Counter)


def latest_changes(changes: Sequence[CatalogChange]) -> dict[str, CatalogChange]:
    """The newest change per item (a later message wins a version tie)."""
    latest: dict[str, CatalogChange] = {}
    for change in changes:
        current = latest.get(change.item_id)
        if current is None or change.version >= current.version:
            latest[change.item_id] = change
    return latest


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
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.enricher = enricher
        self.deadline_s = deadline_s
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
        """Apply a batch of changes; return the events of the writes that applied."""
        self.stats.changes += len(changes)
        latest = latest_changes(changes)
        self.stats.stale += len(changes) - len(latest)  # superseded within the batch
        states = await self.store.states(list(latest))
        deadline = time.monotonic() + self.deadline_s
        writes: list[ItemWrite] = []
        unchanged: list[CatalogChange] = []
        to_build: list[tuple[CatalogChange, str]] = []
        for change in latest.values():
            state = states.get(change.item_id)
            if state is not None and change.version <= state.version:
                self.stats.stale += 1
                continue
            if change.op is ChangeOp.DELETE:
                writes.append(
                    Tombstone(change.item_id, change.version, change.change_id, change.occurred_at)
                )
                continue
            digest = content_hash(change)
            if self._unchanged(state, digest):
                writes.append(
                    VersionBump(
                        change.item_id,
                        change.version,
                        change.change_id,
                        change.available,
                        change.occurred_at,
                    )
                )
                unchanged.append(change)
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
        writes.extend(await self._build_all(to_build, deadline, emit))
        applied = await self.store.apply(writes)
        self.stats.written += len(applied)
        self.stats.stale += len(writes) - len(applied)
        return await self._events(writes, applied, states, {c.item_id for c in unchanged})

    def _unchanged(self, state: ItemState | None, digest: str) -> bool:
        return (
            state is not None
            and state.content_hash == digest
            and state.has_vectors
            and state.embedding_model == self.embedder.name
        )

    async def _build_all(
        self, items: list[tuple[CatalogChange, str]], deadline: float, emit: LogSink
    ) -> list[ItemRecord]:
        if not items:
            return []
        enriching = len(items)

        def enriched_one() -> None:
            nonlocal enriching
            enriching -= 1
            if enriching == 0:  # nothing more will be submitted: do not wait for the timer
                self.batcher.flush()

        results = await asyncio.gather(
            *(self._build(c, d, deadline, emit, enriched_one) for c, d in items),
            return_exceptions=True,
        )
        self.batcher.flush()
        records: list[ItemRecord] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            records.append(result)
        return records

    async def _build(
        self,
        change: CatalogChange,
        digest: str,
        deadline: float,
        emit: LogSink,
        enriched_one: Callable[[], None],
    ) -> ItemRecord:
        raw = raw_text(change.title, change.categories, change.description)
        raw_vector = self.batcher.submit(raw)
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
        self,
        writes: list[ItemWrite],
        applied: set[str],
        states: dict[str, ItemState],
        unchanged: set[str],
    ) -> list[ItemEnriched]:
        stored = {r.item_id: r for r in await self.store.get_many(sorted(unchanged & applied))}
        events = []
        now = utcnow()
        for write in writes:
            if write.item_id not in applied:
                continue
            if isinstance(write, ItemRecord):
                events.append(
                    ItemEnriched(
                        item_id=write.item_id,
                        version=write.version,
                        change_id=write.change_id,
                        content_hash=write.content_hash,
                        enrichment_status=write.enrichment_status,
                        embedding_model=write.embedding_model or "",
                        embedding_dim=write.embedding_dim or 0,
                        prompt_version=write.prompt_version,
                        llm_model=write.llm_model,
                        tags=list(write.tags),
                        enriched_at=write.enriched_at or now,
                    )
                )
            elif isinstance(write, VersionBump):
                row = stored.get(write.item_id)
                events.append(
                    ItemEnriched(
                        item_id=write.item_id,
                        version=write.version,
                        change_id=write.change_id,
                        content_hash=row.content_hash if row else "",
                        enrichment_status=EnrichmentStatus.UNCHANGED,
                        embedding_model=(row.embedding_model or "") if row else "",
                        embedding_dim=(row.embedding_dim or 0) if row else 0,
                        prompt_version=row.prompt_version if row else None,
                        llm_model=row.llm_model if row else None,
                        tags=list(row.tags) if row else [],
                        enriched_at=now,
                    )
                )
            else:
                state = states.get(write.item_id)
                events.append(
                    ItemEnriched(
                        item_id=write.item_id,
                        version=write.version,
                        change_id=write.change_id,
                        deleted=True,
                        content_hash=state.content_hash if state else "",
                        enrichment_status=EnrichmentStatus.DELETED,
                        enriched_at=now,
                    )
                )
            self.stats.statuses[str(events[-1].enrichment_status)] += 1
        return events
