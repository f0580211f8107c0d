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
        return (await self.embed_many([text]))[0]

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, the ones not in the cache in one call on the same thread.

        The instruction scorer embeds a query's sentences through here before retrieval
        embeds the (screened) query: a one-sentence query is then embedded once. Catalog
        sentences pass through once per process (the scorer memoises their scores).
        """
        keys = [" ".join(t.lower().split()) for t in texts]
        found: dict[str, np.ndarray] = {}
        for key in keys:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                found[key] = hit
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            first = {k: t for k, t in zip(keys, texts, strict=True) if k in set(todo)}
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(
                self._pool, self.embedder.embed, [first[k] for k in todo]
            )
            for key, vector in zip(todo, vectors, strict=True):
                found[key] = vector
                self._cache[key] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
