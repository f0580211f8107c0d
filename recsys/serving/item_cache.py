"""A bounded in-process cache of item details and serving-space vectors.

Postgres + pgvector stays the store of record; this only saves the round trips that
fetch the same popular items' text and vectors request after request (explanations, the
profile vector, LLM prompts). What it holds and what it never decides:

* **What**: :class:`~recsys.items.model.ItemRecord` details (no vectors) and the vectors
  of the serving space, per item, least recently used evicted beyond ``max_items`` —
  a catalog larger than the cache is served correctly, its tail just misses more often.
* **Never**: whether an item may be served. Deleted, unavailable or unembedded items
  and the request's filters are checked in SQL on every request (``eligible``,
  ``eligible_each``, ``knn``, ``nearest``, ``similarities`` go straight to Postgres),
  so a stale entry can at most word an explanation with the previous version's text for
  the invalidation delay.
* **Invalidation**: :meth:`ItemCache.invalidate` with the item ids of every
  ``catalog.enriched`` event (the serve worker consumes that topic in each process;
  the enrich worker emits it after the write commits). A load that began before an
  invalidation of one of its items does not store that item (an epoch guard), so a read
  racing an update cannot put the old version back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np

from recsys.items.model import ItemFilters, ItemRecord
from recsys.serving.ports import ItemSource

__all__ = ["CachedItems", "ItemCache"]

V = TypeVar("V")
#: Invalidations remembered for the epoch guard; loads older than the oldest are not stored.
_REMEMBERED = 10_000


class _Lru(Generic[V]):
    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.data: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.max_items:
            self.data.popitem(last=False)


class ItemCache:
    """Details and vectors per item, bounded, invalidated per item (one event loop)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.details: _Lru[ItemRecord] = _Lru(max_items)
        self.vectors: _Lru[np.ndarray] = _Lru(max_items)
        self.epoch = 0
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        self._floor = 0  # loads that began before this epoch store nothing
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self.max_items > 0

    def storable(self, item_id: str, since: int) -> bool:
        """May a value loaded from Postgres by a load that began at epoch ``since`` be kept?"""
        if since < self._floor:
            return False
        return self._invalidated.get(item_id, -1) <= since

    def invalidate(self, item_ids: Iterable[str]) -> None:
        """Forget these items (their next read goes to Postgres)."""
        self.epoch += 1
        for item_id in item_ids:
            self.invalidations += 1
            self.details.data.pop(item_id, None)
            self.vectors.data.pop(item_id, None)
            self._invalidated[item_id] = self.epoch
            self._invalidated.move_to_end(item_id)
        while len(self._invalidated) > _REMEMBERED:
            _, at = self._invalidated.popitem(last=False)
            self._floor = max(self._floor, at)

    def clear(self) -> None:
        """Forget everything (the invalidation feed was interrupted)."""
        self.epoch += 1
        self._floor = self.epoch
        self._invalidated.clear()
        self.details.data.clear()
        self.vectors.data.clear()


class CachedItems:
    """:class:`~recsys.serving.ports.ItemSource` reading details and vectors through a cache."""

    def __init__(self, inner: ItemSource, cache: ItemCache) -> None:
        self.inner = inner
        self.cache = cache

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        return await self.inner.knn(vector, k, filters=filters, exclude=exclude)

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        return await self.inner.eligible(item_ids, filters)

    async def nearest(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        return await self.inner.nearest(vector, k, filters=filters, exclude=exclude, also=also)

    async def eligible_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        return await self.inner.eligible_each(item_ids, filter_sets)

    async def count_eligible(self, filters: ItemFilters | None, exclude: Collection[str]) -> int:
        return await self.inner.count_eligible(filters, exclude)

    async def similarities(
        self, vector: np.ndarray, item_ids: Sequence[str], filters: ItemFilters | None
    ) -> dict[str, float]:
        return await self.inner.similarities(vector, item_ids, filters)

    async def categories(self) -> list[str]:
        return await self.inner.categories()

    async def details(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        if not self.cache.enabled:
            return await self.inner.details(item_ids)
        return await self._through(self.cache.details, item_ids, self.inner.details)

    async def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not self.cache.enabled:
            return await self.inner.vectors(item_ids)
        return await self._through(self.cache.vectors, item_ids, self.inner.vectors)

    async def _through(self, lru: _Lru[V], item_ids: Sequence[str], load: object) -> dict[str, V]:
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, V] = {}
        missing = []
        for item_id in ids:
            hit = lru.get(item_id)
            if hit is None:
                missing.append(item_id)
            else:
                out[item_id] = hit
        self.cache.hits += len(out)
        self.cache.misses += len(missing)
        if missing:
            since = self.cache.epoch
            loaded: dict[str, V] = await load(missing)  # type: ignore[operator]
            for item_id, value in loaded.items():
                if self.cache.storable(item_id, since):
                    lru.put(item_id, value)
            out |= loaded
        return {i: out[i] for i in ids if i in out}
