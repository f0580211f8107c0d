"""The serving caches: query embeddings batched while the model is busy, and the item
cache — bounded, invalidated per item, never storing a value read before an invalidation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Sequence

import numpy as np

from recsys.items.model import ItemFilters, ItemRecord
from recsys.serving.item_cache import CachedItems, ItemCache
from recsys.serving.query_embedding import QueryEncoder


class GatedEmbedder:
    """Embeds by text length; the first call waits until ``gate`` is set."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.gate.wait(10)
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


async def test_queries_arriving_while_the_model_is_busy_go_in_one_batch() -> None:
    model = GatedEmbedder()
    encoder = QueryEncoder(model, max_batch=16)  # type: ignore[arg-type]
    try:
        first = asyncio.create_task(encoder.embed("first"))
        while not model.calls:  # noqa: ASYNC110 - the model thread has no event to await
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(encoder.embed(t)) for t in ("ab", "abc", "AB ", "abcd")]
        await asyncio.sleep(0.01)
        model.gate.set()
        vectors = await asyncio.gather(first, *later)
        assert [float(v[0]) for v in vectors] == [5.0, 2.0, 3.0, 2.0, 4.0]
        # one pass for the first, one for the rest; "AB " and "ab" are one text
        assert model.calls == [["first"], ["ab", "abc", "abcd"]]
        assert (encoder.batches, encoder.embedded) == (2, 4)
        again = await encoder.embed("ABC")  # cached: no third pass
        assert float(again[0]) == 3.0 and len(model.calls) == 2
    finally:
        encoder.close()


def _record(item_id: str, title: str) -> ItemRecord:
    return ItemRecord(
        item_id=item_id, version=1, change_id=f"c-{item_id}", content_hash="h", title=title
    )


class Store:
    """An item source whose reads can be held back (to race an invalidation)."""

    def __init__(self) -> None:
        self.titles = {f"i{n}": f"title {n}" for n in range(10)}
        self.reads: list[list[str]] = []
        self.hold: asyncio.Event | None = None

    async def details(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        self.reads.append(list(item_ids))
        snapshot = {i: _record(i, self.titles[i]) for i in item_ids if i in self.titles}
        if self.hold is not None:
            await self.hold.wait()
        return snapshot

    async def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {i: np.ones(2, dtype=np.float32) for i in item_ids if i in self.titles}

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        return []

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        return set(item_ids)

    async def similarities(
        self, vector: np.ndarray, item_ids: Sequence[str], filters: ItemFilters | None
    ) -> dict[str, float]:
        return {}

    async def count_eligible(self, filters: ItemFilters | None, exclude: Collection[str]) -> int:
        return len(self.titles)

    async def categories(self) -> list[str]:
        return []


async def test_the_item_cache_is_bounded_and_answers_like_the_store() -> None:
    store = Store()
    items = CachedItems(store, ItemCache(max_items=3))
    first = await items.details(["i1", "i2", "i3", "i4", "missing"])
    assert [r.title for r in first.values()] == ["title 1", "title 2", "title 3", "title 4"]
    assert len(items.cache.details.data) == 3  # the bound holds: i1 evicted
    again = await items.details(["i4", "i1"])
    assert list(again) == ["i4", "i1"] and store.reads[-1] == ["i1"]
    assert items.cache.hits == 1


async def test_an_invalidated_item_is_read_again_and_a_racing_read_is_not_stored() -> None:
    store = Store()
    items = CachedItems(store, ItemCache(max_items=100))
    await items.details(["i1"])
    store.titles["i1"] = "renamed"
    assert (await items.details(["i1"]))["i1"].title == "title 1"  # cached until told
    items.cache.invalidate(["i1"])
    assert (await items.details(["i1"]))["i1"].title == "renamed"
    # a read that began before an update's invalidation must not put the old row back
    store.hold = asyncio.Event()
    slow = asyncio.create_task(items.details(["i2"]))
    while len(store.reads) < 3:  # noqa: ASYNC110 - wait for the read to start
        await asyncio.sleep(0)
    store.titles["i2"] = "new 2"
    items.cache.invalidate(["i2"])
    store.hold.set()
    assert (await slow)["i2"].title == "title 2"  # that request saw the old row...
    store.hold = None
    assert (await items.details(["i2"]))["i2"].title == "new 2"  # ...but it was not kept


async def test_a_cleared_cache_reads_everything_again() -> None:
    store = Store()
    items = CachedItems(store, ItemCache(max_items=100))
    await items.vectors(["i1", "i2"])
    items.cache.clear()
    await items.details(["i1"])
    assert items.cache.hits == 0 and len(items.cache.vectors.data) == 0


async def test_embed_many_shares_the_batches_and_embeds_a_repeated_text_once() -> None:
    model = GatedEmbedder()
    model.gate.set()
    encoder = QueryEncoder(model)  # type: ignore[arg-type]
    try:
        vectors = await encoder.embed_many(["ab", "abc", "AB"])
        assert [float(v[0]) for v in vectors] == [2.0, 3.0, 2.0]
        assert model.calls == [["ab", "abc"]]
        assert float((await encoder.embed("abc"))[0]) == 3.0 and len(model.calls) == 1
    finally:
        encoder.close()


async def test_a_query_goes_before_a_backlog_of_bulk_texts() -> None:
    model = GatedEmbedder()
    encoder = QueryEncoder(model, max_batch=4)  # type: ignore[arg-type]
    try:
        first = asyncio.create_task(encoder.embed("first"))
        while not model.calls:  # noqa: ASYNC110 - the model thread has no event to await
            await asyncio.sleep(0.001)
        bulk = asyncio.create_task(encoder.embed_many([f"sentence {i}" for i in range(10)]))
        await asyncio.sleep(0)
        query = asyncio.create_task(encoder.embed("the query"))
        await asyncio.sleep(0.01)
        model.gate.set()
        await asyncio.gather(first, bulk, query)
        # the query, though it came last, rode the first batch after the busy one
        assert "the query" in model.calls[1]
        assert sum(len(c) for c in model.calls) == 12
    finally:
        encoder.close()
