"""In-memory :class:`~recsys.items.store.ItemStore`: exact kNN with numpy.

For unit tests, notebooks and offline evaluation without Postgres. Same semantics as
the pgvector store (the contract suite runs against both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from recsys.items.model import (
    ItemFilters,
    ItemRecord,
    ItemState,
    ItemWrite,
    Space,
    Tombstone,
    VersionBump,
    check_record,
)
from recsys.items.store import Neighbours
from recsys.records import EnrichmentStatus, utcnow

__all__ = ["InMemoryItemStore"]


class InMemoryItemStore:
    """A dict of rows; kNN by brute-force cosine similarity."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self._rows: dict[str, ItemRecord] = {}

    async def dimension(self) -> int:
        return self.dim

    async def apply(self, writes: Sequence[ItemWrite]) -> set[str]:
        applied: set[str] = set()
        now = utcnow()
        for write in writes:
            current = self._rows.get(write.item_id)
            if current is not None and current.version >= write.version:
                continue
            if isinstance(write, ItemRecord):
                check_record(write, self.dim)
                self._rows[write.item_id] = replace(write, updated_at=now)
            elif isinstance(write, VersionBump):
                if current is None:
                    continue
                self._rows[write.item_id] = replace(
                    current,
                    version=write.version,
                    change_id=write.change_id,
                    available=write.available,
                    deleted=False,
                    occurred_at=write.occurred_at,
                    updated_at=now,
                )
            elif isinstance(write, Tombstone):
                if current is None:
                    self._rows[write.item_id] = ItemRecord(
                        item_id=write.item_id,
                        version=write.version,
                        change_id=write.change_id,
                        content_hash="",
                        deleted=True,
                        enrichment_status=EnrichmentStatus.DELETED,
                        occurred_at=write.occurred_at,
                        updated_at=now,
                    )
                else:
                    self._rows[write.item_id] = replace(
                        current,
                        version=write.version,
                        change_id=write.change_id,
                        deleted=True,
                        occurred_at=write.occurred_at,
                        updated_at=now,
                    )
            applied.add(write.item_id)
        return applied

    async def states(self, item_ids: Sequence[str]) -> dict[str, ItemState]:
        out = {}
        for item_id in item_ids:
            row = self._rows.get(item_id)
            if row is not None:
                out[item_id] = ItemState(
                    version=row.version,
                    content_hash=row.content_hash,
                    deleted=row.deleted,
                    embedding_model=row.embedding_model,
                    has_vectors=row.embedding_model is not None,
                    change_id=row.change_id,
                )
        return out

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> Neighbours:
        if k <= 0:
            return []
        excluded = set(exclude_ids)
        rows = [
            row
            for row in self._rows.values()
            if row.eligible
            and row.item_id not in excluded
            and (filters is None or filters.matches(row))
        ]
        if not rows:
            return []
        matrix = np.stack([row.vector(space) for row in rows]).astype(np.float64)  # type: ignore[misc]
        query = np.asarray(vector, dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
        sims = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        order = sorted(range(len(rows)), key=lambda i: (-sims[i], rows[i].item_id))[:k]
        return [(rows[i].item_id, float(sims[i])) for i in order]

    async def knn_and_similarities(
        self,
        vector: np.ndarray,
        k: int,
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
        exclude_ids: Sequence[str] = (),
        item_ids: Sequence[str] = (),
    ) -> tuple[Neighbours, dict[str, float]]:
        near = await self.knn(vector, k, space=space, filters=filters, exclude_ids=exclude_ids)
        return near, await self.similarities(vector, item_ids, space=space, filters=filters)

    async def get_many(
        self, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[ItemRecord]:
        out = []
        for item_id in item_ids:
            row = self._rows.get(item_id)
            if row is None:
                continue
            if not with_vectors:
                row = replace(row, raw_embedding=None, enriched_embedding=None)
            out.append(row)
        return out

    async def eligible_ids(
        self, item_ids: Sequence[str], filters: ItemFilters | None = None
    ) -> set[str]:
        return {
            i
            for i in item_ids
            if (row := self._rows.get(i)) is not None
            and row.eligible
            and (filters is None or filters.matches(row))
        }

    async def eligible_ids_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        return [await self.eligible_ids(item_ids, filters) for filters in filter_sets]

    async def vectors(
        self, item_ids: Sequence[str], *, space: Space = "enriched"
    ) -> dict[str, np.ndarray]:
        out = {}
        for item_id in item_ids:
            row = self._rows.get(item_id)
            vec = row.vector(space) if row is not None else None
            if vec is not None:
                out[item_id] = vec
        return out

    async def similarities(
        self,
        vector: np.ndarray,
        item_ids: Sequence[str],
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
    ) -> dict[str, float]:
        unit = vector / (np.linalg.norm(vector) or 1.0)
        out = {}
        for item_id in dict.fromkeys(item_ids):
            row = self._rows.get(item_id)
            vec = row.vector(space) if row is not None else None
            if row is None or vec is None or not row.eligible:
                continue
            if filters is not None and not filters.matches(row):
                continue
            out[item_id] = float(np.dot(unit, vec / (np.linalg.norm(vec) or 1.0)))
        return out

    async def categories(self) -> list[str]:
        return sorted({c for row in self._rows.values() if row.eligible for c in row.categories})

    async def count_eligible(
        self, filters: ItemFilters | None = None, exclude_ids: Sequence[str] = ()
    ) -> int:
        skip = set(exclude_ids)
        return sum(
            1
            for row in self._rows.values()
            if row.eligible
            and row.item_id not in skip
            and (filters is None or filters.matches(row))
        )

    async def count(self, *, eligible_only: bool = False) -> int:
        if eligible_only:
            return sum(1 for row in self._rows.values() if row.eligible)
        return len(self._rows)
