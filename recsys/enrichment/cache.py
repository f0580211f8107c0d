"""The enrichment cache, keyed by (content hash, prompt version, LLM model).

Only validated answers are cached. Sending an item again with the same content costs
no LLM call; a new prompt version (e.g. another taxonomy) or another model misses on
purpose, because its answer could differ. Values are the enrichment as JSON; the
reader re-validates them, so a damaged row is a miss, never bad data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from recsys import db

__all__ = ["CacheKey", "EnrichmentCache", "InMemoryEnrichmentCache", "PgEnrichmentCache"]


@dataclass(frozen=True)
class CacheKey:
    """What an enrichment depends on."""

    content_hash: str
    prompt_version: str
    llm_model: str


class EnrichmentCache(Protocol):
    """Stores validated enrichments as JSON objects."""

    async def get(self, key: CacheKey) -> dict[str, Any] | None:
        """The cached enrichment, or None."""
        ...

    async def put(
        self,
        key: CacheKey,
        value: dict[str, Any],
        *,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float,
    ) -> None:
        """Remember a validated enrichment (first writer wins)."""
        ...


class InMemoryEnrichmentCache:
    """A bounded LRU; also the in-process layer in front of the Postgres cache."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, dict[str, Any]] = OrderedDict()

    async def get(self, key: CacheKey) -> dict[str, Any] | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    async def put(
        self,
        key: CacheKey,
        value: dict[str, Any],
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class PgEnrichmentCache:
    """The ``enrichment_cache`` table (``migrations/0101_enrichment_cache.sql``)."""

    def __init__(self, pool: AsyncConnectionPool, *, acquire_timeout_s: float = 10.0) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    async def get(self, key: CacheKey) -> dict[str, Any] | None:
        async with db.connection(self.pool, "enrichment cache", self.acquire_timeout_s) as conn:
            cur = await conn.execute(
                "SELECT enrichment FROM enrichment_cache "
                "WHERE content_hash = %s AND prompt_version = %s AND llm_model = %s",
                (key.content_hash, key.prompt_version, key.llm_model),
            )
            row = await cur.fetchone()
        return dict(row[0]) if row is not None and isinstance(row[0], dict) else None

    async def put(
        self,
        key: CacheKey,
        value: dict[str, Any],
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        async with db.connection(self.pool, "enrichment cache", self.acquire_timeout_s) as conn:
            await conn.execute(
                "INSERT INTO enrichment_cache (content_hash, prompt_version, llm_model, "
                "enrichment, tokens_in, tokens_out, cost_usd) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (
                    key.content_hash,
                    key.prompt_version,
                    key.llm_model,
                    Jsonb(value),
                    tokens_in,
                    tokens_out,
                    cost_usd,
                ),
            )
