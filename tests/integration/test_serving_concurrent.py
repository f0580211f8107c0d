"""A request's independent reads go out together (the user's state beside the query's
screening and embedding, the CF and content lists, the kNN search beside the popular
head's similarities, eligibility beside the soft preference's levels): the answers are
exactly those of the same reads made one at a time, in order."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from recsys.records import RecRequest, Route
from tests.integration.serving_support import serving, world
from tests.integration.serving_world import World

__all__ = ["world"]

pytestmark = pytest.mark.integration

ASKS = [
    {"user_id": "u-warm"},
    {"user_id": "u-warming"},
    {"user_id": "u-cold"},
    {"user_id": "u-new", "query": "a funny family comedy"},
    {"user_id": "u-warm", "query": "something with spaceships"},
    {"user_id": "u-warming", "query": "a comedy from the 90s, no horror"},
    {"user_id": "u-cold", "query": "drama or romance"},
    {"user_id": "u-warm", "query": "a tense thriller with a heist", "exclude_item_ids": []},
]


class Ports:
    """Wraps a port's coroutine methods: ``lock`` makes every call wait for the one
    before it (the sequential schedule); without it, the calls in flight are counted."""

    def __init__(self, inner: Any, lock: asyncio.Lock | None, meter: dict[str, int]) -> None:
        self._inner, self._lock, self._meter = inner, lock, meter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._lock is not None:
                await self._lock.acquire()
            self._meter["now"] += 1
            self._meter["most"] = max(self._meter["most"], self._meter["now"])
            try:
                return await attr(*args, **kwargs)
            finally:
                self._meter["now"] -= 1
                if self._lock is not None:
                    self._lock.release()

        return call


def _wrap(rec: Any, lock: asyncio.Lock | None) -> dict[str, int]:
    meter = {"now": 0, "most": 0}
    rec.items = Ports(rec.items, lock, meter)
    rec.users = Ports(rec.users, lock, meter)
    rec.cf = Ports(rec.cf, lock, meter)
    rec.embedder = Ports(rec.embedder, lock, meter)
    return meter


async def test_concurrent_reads_answer_as_sequential_ones(world: World, embedder: Any) -> None:
    async with (
        serving(world, embedder) as free,
        serving(world, embedder, force_route=Route.HYBRID) as free_hybrid,
        serving(world, embedder) as serial,
        serving(world, embedder, force_route=Route.HYBRID) as serial_hybrid,
    ):
        overlap = [_wrap(free, None), _wrap(free_hybrid, None)]
        alone = [_wrap(serial, asyncio.Lock()), _wrap(serial_hybrid, asyncio.Lock())]
        routes = set()
        for _ in range(2):  # the second round from warm caches (embeddings, items)
            for ask in ASKS:
                request = RecRequest(deadline_ms=60_000, k=10, **ask)
                for a, b in ((free, serial), (free_hybrid, serial_hybrid)):
                    got, want = (await a.recommend(request)), (await b.recommend(request))
                    routes.add(got.response.route)
                    assert got.response.route == want.response.route
                    assert [
                        (i.item_id, i.score, i.explanation, i.source) for i in got.response.items
                    ] == [
                        (i.item_id, i.score, i.explanation, i.source) for i in want.response.items
                    ]
                    assert len(got.response.items) == request.k
    assert Route.HYBRID in routes and len(routes) >= 2
    assert all(m["most"] >= 2 for m in overlap)  # reads did overlap
    assert all(m["most"] == 1 for m in alone)
