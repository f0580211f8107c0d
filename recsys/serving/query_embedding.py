"""Embedding request text off the event loop, with a small cache for repeated queries."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recsys.embedding import Embedder

__all__ = ["QueryEncoder"]


class QueryEncoder:
    """:class:`~recsys.serving.ports.QueryEmbedder` over a sentence-transformers embedder.

    One dedicated thread: torch already uses the cores, and a single thread keeps one
    query's latency predictable instead of interleaving several.
    """

    def __init__(self, embedder: Embedder, cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-embed")

    @property
    def name(self) -> str:
        return self.embedder.name

    async def embed(self, text: str) -> np.ndarray:
        key = " ".join(text.lower().split())
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        loop = asyncio.get_running_loop()
        vector = (await loop.run_in_executor(self._pool, self.embedder.embed, [text]))[0]
        self._cache[key] = vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vector

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in one call on the same thread (not cached here: the
        instruction scorer keeps its own memo of what it scored)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.embedder.embed, list(texts))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
