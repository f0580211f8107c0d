"""The popular head is refreshed by one caller at a time, the others keep the old one."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from recsys.serving.config import ServingConfig
from recsys.serving.recommender import Recommender


class SlowPopularity:
    """A CF source whose popular head takes until ``release`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        self.calls += 1
        await self.release.wait()
        return [(f"item-{self.calls}", 1.0)]

    async def als(self, recent: Sequence[Any], n: int, exclude: Collection[str]) -> list[Any]:
        return []

    async def covisit(
        self, items: Sequence[str], n: int, exclude: Collection[str], *, shares: bool = False
    ) -> list[Any]:
        return []

    async def model_version(self) -> str | None:
        return None


async def test_the_popular_head_is_loaded_once_and_refreshed_in_the_background() -> None:
    now = [0.0]
    cf = SlowPopularity()
    rec = Recommender(
        items=None,  # type: ignore[arg-type]
        users=None,  # type: ignore[arg-type]
        cf=cf,
        embedder=None,
        config=ServingConfig(),
        clock=lambda: now[0],
    )
    first = [asyncio.create_task(rec.popular()) for _ in range(20)]
    await asyncio.sleep(0)
    cf.release.set()
    assert {tuple(p) for p in await asyncio.gather(*first)} == {(("item-1", 1.0),)}
    assert cf.calls == 1  # twenty requests, one query
    now[0] = 60.0  # expired: callers keep the old head while one refresh runs
    cf.release.clear()
    stale = await asyncio.gather(*(rec.popular() for _ in range(20)))
    assert all(p == [("item-1", 1.0)] for p in stale) and cf.calls == 2
    cf.release.set()
    for _ in range(10):  # let the refresh land
        await asyncio.sleep(0)
    assert await rec.popular() == [("item-2", 1.0)] and cf.calls == 2
