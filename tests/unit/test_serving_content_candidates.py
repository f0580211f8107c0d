"""Content candidates: the kNN search and the popular head's similarities are one read
(``nearest``), and the result is what the search followed by the head's missing items
gave."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from recsys.serving.candidates import Candidate, content_candidates, popularity_prior


class _Items:
    """kNN over fixed similarities; ``similarities`` answers a little differently for
    the same item (as a second read might), so keeping the search's value shows;
    ``nearest`` is the two in one read."""

    def __init__(self, sims: dict[str, float]) -> None:
        self.sims = sims
        self.in_flight = 0
        self.most = 0
        self.asked: list[list[str]] = []
        self.reads = 0

    async def _enter(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0)  # let the other read start

    async def knn(
        self, vector: Any, k: int, *, filters: Any = None, exclude: Collection[str] = ()
    ) -> list[tuple[str, float]]:
        await self._enter()
        self.in_flight -= 1
        ranked = sorted((i for i in self.sims if i not in exclude), key=lambda i: -self.sims[i])
        return [(i, self.sims[i]) for i in ranked[:k]]

    async def similarities(
        self, vector: Any, item_ids: Sequence[str], filters: Any
    ) -> dict[str, float]:
        await self._enter()
        self.in_flight -= 1
        self.asked.append(list(item_ids))
        return {i: self.sims[i] - 0.001 for i in item_ids if i in self.sims}

    async def nearest(
        self,
        vector: Any,
        k: int,
        *,
        filters: Any = None,
        exclude: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        self.reads += 1
        found = await self.knn(vector, k, filters=filters, exclude=exclude)
        return found, (await self.similarities(vector, also, filters) if also else {})


def _sequential(
    sims: dict[str, float], n: int, exclude: set[str], popular: list[tuple[str, float]], w: float
) -> list[Candidate]:
    """The former order: search, then the head items it did not find."""
    ranked = sorted((i for i in sims if i not in exclude), key=lambda i: -sims[i])
    near = {i: sims[i] for i in ranked[:n]}
    head = [i for i, _ in popular[:n] if i not in near and i not in exclude]
    if head and w > 0:
        near |= {i: sims[i] - 0.001 for i in head}
    prior = popularity_prior(popular)
    out = [Candidate(i, s + w * prior.get(i, 0.0), "content") for i, s in near.items()]
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out[:n]


async def test_one_read_and_as_before() -> None:
    rng = np.random.default_rng(4)
    sims = {f"i{n:03d}": float(s) for n, s in enumerate(rng.uniform(-0.2, 0.9, 300))}
    popular = [(f"i{n:03d}", float(300 - n)) for n in range(0, 300, 3)]
    for n, exclude, w in [(20, set(), 0.5), (50, {"i000", "i003", "i010"}, 0.3), (10, set(), 0.0)]:
        items = _Items(sims)
        got = await content_candidates(
            items,  # type: ignore[arg-type]
            np.zeros(4, np.float32),
            n,
            filters=None,
            exclude=exclude,
            popular=popular,
            popularity_weight=w,
        )
        assert got == _sequential(sims, n, exclude, popular, w)
        assert items.reads == 1  # the search and the head: one read
        if w > 0:
            assert not set(items.asked[0]) & exclude
        else:
            assert items.asked == []  # no head without its weight
