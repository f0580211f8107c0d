"""The ``ItemStore`` port: what enrichment writes and serving reads.

Two implementations share one contract test suite with known answers:
:class:`recsys.items.pgvector.PgItemStore` (Postgres + pgvector, HNSW cosine indexes)
and :class:`recsys.items.memory.InMemoryItemStore` (numpy, exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from recsys.items.model import ItemFilters, ItemRecord, ItemState, ItemWrite, Space

__all__ = ["ItemStore", "Neighbours"]

#: ``[(item_id, cosine similarity)]``, most similar first.
Neighbours = list[tuple[str, float]]


class ItemStore(Protocol):
    """Versioned item rows with two vector spaces."""

    async def dimension(self) -> int:
        """Dimension of stored vectors."""
        ...

    async def apply(self, writes: Sequence[ItemWrite]) -> set[str]:
        """Apply versioned writes atomically; the ids whose write was newer (applied).

        Raises:
            DatabaseUnavailable: the store cannot be reached (nothing was written).
        """
        ...

    async def states(self, item_ids: Sequence[str]) -> dict[str, ItemState]:
        """Version, content hash and flags of the stored items among ``item_ids``."""
        ...

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> Neighbours:
        """Up to ``k`` eligible items nearest to ``vector`` by cosine similarity."""
        ...

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
        """``knn(vector, k, …)`` and ``similarities(vector, item_ids, …)`` (same space and
        ``filters``; ``exclude_ids`` applies to the search only) in one read: one statement
        on pgvector, so both answers come from the same snapshot."""
        ...

    async def get_many(
        self, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[ItemRecord]:
        """Stored rows of ``item_ids`` (deleted ones too), in the order asked; missing skipped."""
        ...

    async def eligible_ids(
        self, item_ids: Sequence[str], filters: ItemFilters | None = None
    ) -> set[str]:
        """The subset that exists, is not deleted, is available, is embedded and matches
        ``filters`` (the request's hard constraints) when given."""
        ...

    async def eligible_ids_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        """``[eligible_ids(item_ids, f) for f in filter_sets]`` in one read (one statement
        on pgvector; none when either is empty)."""
        ...

    async def vectors(
        self, item_ids: Sequence[str], *, space: Space = "enriched"
    ) -> dict[str, np.ndarray]:
        """Stored vectors of ``space`` for the given items (missing ones left out)."""
        ...

    async def similarities(
        self,
        vector: np.ndarray,
        item_ids: Sequence[str],
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
    ) -> dict[str, float]:
        """Cosine similarity of ``vector`` to each given item that is eligible and matches
        ``filters`` (computed where the vectors are: no vector leaves the store)."""
        ...

    async def categories(self) -> list[str]:
        """Every category of an eligible item, sorted."""
        ...

    async def count_eligible(
        self, filters: ItemFilters | None = None, exclude_ids: Sequence[str] = ()
    ) -> int:
        """Number of eligible items that match ``filters`` and are not in ``exclude_ids``."""
        ...

    async def count(self, *, eligible_only: bool = False) -> int:
        """Number of rows (or of eligible items)."""
        ...
