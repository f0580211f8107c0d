"""Embedding batches are bounded by size and by time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from recsys.enrichment.batching import MicroBatcher


async def double(items: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return [2 * i for i in items]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Yield to the event loop until ``condition()`` holds (bounded)."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - the batcher has no event to await
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout_s)


async def test_full_batches_go_at_once_and_flush_sends_the_rest() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_size=3, max_wait_s=3600)
    tasks = [batcher.submit(i) for i in range(7)]
    await until(lambda: len(batcher.batch_sizes) == 2)
    assert batcher.batch_sizes == [3, 3] and batcher.pending == 1  # the 7th waits (an hour)
    batcher.flush()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [0, 2, 4, 6, 8, 10, 12]
    assert batcher.batch_sizes == [3, 3, 1]


async def test_a_partial_batch_goes_when_its_time_is_up() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_size=100, max_wait_s=0.05)
    results = await asyncio.wait_for(asyncio.gather(batcher.submit(1), batcher.submit(2)), 30)
    assert results == [2, 4] and batcher.batch_sizes == [2]


async def test_a_failing_batch_fails_each_of_its_items() -> None:
    async def broken(items: list[int]) -> list[int]:
        raise RuntimeError("model exploded")

    batcher: MicroBatcher[int, int] = MicroBatcher(broken, max_size=2, max_wait_s=3600)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(double, max_size=0, max_wait_s=1)
