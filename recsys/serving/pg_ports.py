"""The serving ports over Postgres + pgvector (items, users' read model, CF tables)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from recsys.items.model import ItemFilters, ItemRecord
from recsys.items.pgvector import PgItemStore

__all__ = ["PgItems"]


class PgItems:
    """:class:`~recsys.serving.ports.ItemSource` over the item store, in one vector space."""

    def __init__(self, store: PgItemStore, space: Literal["raw", "enriched"] = "enriched") -> None:
        self.store = store
        self.space: Literal["raw", "enriched"] = space

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        return await self.store.knn(
            vector, k, space=self.space, filters=filters, exclude_ids=list(exclude)
        )

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        return await self.store.eligible_ids(list(item_ids), filters)

    async def details(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        return {r.item_id: r for r in await self.store.get_many(list(dict.fromkeys(item_ids)))}

    async def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return await self.store.vectors(list(dict.fromkeys(item_ids)), space=self.space)

    async def categories(self) -> list[str]:
        return await self.store.categories()
