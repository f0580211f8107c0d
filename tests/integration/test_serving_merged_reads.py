"""The merged reads serve what the separate ones did: the kNN search with the popular
head's similarities (``ItemSource.nearest``, one statement) and eligibility with the soft
preference's parts (``ItemSource.eligible_each``, one statement) against the same ports
answering each through the statements they replace (``knn`` + ``similarities``, one
``eligible`` per filter set); both through an item cache far smaller than the catalog,
before and after items the answers held are deleted or made unavailable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pytest

from recsys import db
from recsys.items import ItemFilters, Tombstone, VersionBump
from recsys.items.pgvector import PgItemStore
from recsys.records import RecRequest, Route
from recsys.serving.item_cache import CachedItems, ItemCache
from recsys.serving.ports import ItemSource
from tests.integration.serving_support import serving, world
from tests.integration.serving_world import World
from tests.integration.test_serving_concurrent import ASKS

__all__ = ["world"]

pytestmark = pytest.mark.integration

MORE_ASKS = [
    {"user_id": "u-new", "query": "90s comedy, no horror please"},
    {"user_id": "u-warm", "query": "a comedy from the 90s, no horror", "k": 25},
    {"user_id": "u-cold", "query": "something funny", "exclude_item_ids": "HEAD"},
]


class Counted:
    """The port as it is, counting which of its reads were asked."""

    def __init__(self, inner: ItemSource) -> None:
        self.inner, self.calls = inner, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return call if callable(attr) else attr


class Separate(Counted):
    """The merged reads made as the separate statements they replace."""

    async def nearest(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        self.calls["nearest"] += 1
        found = await self.inner.knn(vector, k, filters=filters, exclude=exclude)
        return found, (await self.inner.similarities(vector, also, filters) if also else {})

    async def eligible_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        self.calls["eligible_each"] += 1
        return [await self.inner.eligible(item_ids, f) for f in filter_sets]


def _answer(served: Any) -> tuple[Any, ...]:
    r = served.response
    return (
        r.route,
        [(i.item_id, i.score, i.explanation, i.source) for i in r.items],
        r.eligible_count,
        r.short_reason,
    )


async def test_merged_reads_serve_as_separate_ones(world: World, embedder: Any) -> None:
    async with (
        serving(world, embedder) as merged,
        serving(world, embedder, force_route=Route.HYBRID) as merged_hybrid,
        serving(world, embedder) as separate,
        serving(world, embedder, force_route=Route.HYBRID) as separate_hybrid,
    ):
        pairs = []
        for a, b in ((merged, separate), (merged_hybrid, separate_hybrid)):
            # a cache of 8 items under a 240-item catalog: most reads miss and evict
            a.items = Counted(CachedItems(a.items, ItemCache(max_items=8)))  # type: ignore[arg-type]
            b.items = CachedItems(Separate(b.items), ItemCache(max_items=8))  # type: ignore[arg-type]
            pairs.append((a, b))
        head = [i for i, _ in (await merged.popular())[:5]]
        assert head
        served: set[str] = set()
        gone: set[str] = set()
        for round_ in range(2):
            for ask in [*ASKS, *MORE_ASKS]:
                fields = dict(ask)
                if fields.get("exclude_item_ids") == "HEAD":
                    fields["exclude_item_ids"] = head[:3]
                fields.setdefault("k", 10)
                request = RecRequest(deadline_ms=60_000, **fields)
                for a, b in pairs:
                    got, want = await a.recommend(request), await b.recommend(request)
                    assert _answer(got) == _answer(want), (round_, fields)
                    served |= {i.item_id for i in got.response.items}
                    if round_ == 1:
                        assert not {i.item_id for i in got.response.items} & gone
            if round_ == 0:
                # between the rounds: delete the head's top item and served items, make
                # another unavailable (the popular list is cached: its gone items stay
                # in it and must be dropped by the SQL eligibility check)
                gone = {head[0], *sorted(served - world.deleted)[:4], head[1]}
                pool = db.async_pool(world.dsn, min_size=1, max_size=1, name="merged-test")
                await pool.open(wait=True)
                try:
                    writes: list[Any] = [Tombstone(i, 200, f"{i}-gone") for i in gone - {head[1]}]
                    writes.append(VersionBump(head[1], 200, f"{head[1]}-off", available=False))
                    await PgItemStore(pool).apply(writes)
                finally:
                    await pool.close()
        for a, _ in pairs:
            calls = a.items.calls  # type: ignore[attr-defined]
            assert calls["nearest"] > 0 and calls["eligible_each"] > 0
            assert calls["similarities"] == 0 and calls["knn"] == 0
