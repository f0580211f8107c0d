"""The item store's write modes: online (HNSW kept current) or backfill (built at the end).

A backfill loads a catalog into an empty store: its rows are written with the vector
indexes absent, and each HNSW index is built once when the load is over. Keeping a graph
current costs one graph insert per row per vector space; building it over the finished
table costs about a fifth of that in Postgres CPU (see docs/workers/enrich.md), and on a
small machine those inserts compete with the embedding model for the same cores.

Everything here goes through structures of ``migrations/0102_items_backfill.sql``: the
``item_store_mode`` row, and the functions that drop and build exactly the migrated
indexes; no DDL is composed at run time. The mode is stored, not held in a process, so a
crash at any point leaves a state the next start finishes:

* crash while loading — the rows written so far stay (versioned upserts: the replay of
  what was not committed changes nothing twice); a worker started in backfill mode goes
  on loading, one started online builds the indexes first;
* crash while building — the build's transaction rolls back, the mode is still
  ``backfill``, and the next start builds again.

While the indexes are absent, kNN still answers exactly (a sequential scan), only slower;
:meth:`VectorIndexes.mode` lets ``doctor`` and serving say so.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from recsys import db

__all__ = ["StoreMode", "VectorIndexes"]

log = logging.getLogger(__name__)

#: The HNSW indexes ``migrations/0100_items.sql`` creates and the backfill functions
#: drop and build.
VECTOR_INDEXES = ("items_raw_embedding_hnsw", "items_enriched_embedding_hnsw")


class StoreMode(StrEnum):
    """How rows reach the vector indexes."""

    #: Every write inserts into both HNSW indexes (the default).
    ONLINE = "online"
    #: A bulk load is under way: no vector index until it finishes.
    BACKFILL = "backfill"


class VectorIndexes:
    """Switches the ``items`` table between online and backfill mode.

    Args:
        pool: an async pool on the store's database.
        build_memory_mb: ``maintenance_work_mem`` of the index build; the graph should fit
            in it (≈ 1.3 KB per row per index for 384-d vectors), or the build slows
            down several-fold.
        build_timeout_s: statement timeout of the build (the pool's own is meant for
            queries, not for building a graph over the whole catalog).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        build_memory_mb: int = 1024,
        build_timeout_s: float = 3600.0,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.build_memory_mb = build_memory_mb
        self.build_timeout_s = build_timeout_s
        self.acquire_timeout_s = acquire_timeout_s

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "item store mode", self.acquire_timeout_s)

    async def mode(self) -> StoreMode:
        """The stored mode."""
        async with self._conn() as conn:
            cur = await conn.execute("SELECT mode FROM item_store_mode")
            row = await cur.fetchone()
            if not conn.autocommit:
                await conn.commit()
        return StoreMode(row[0]) if row else StoreMode.ONLINE

    async def present(self) -> list[str]:
        """The vector indexes that exist now (both, online)."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'items' "
                "AND indexname = ANY(%s) ORDER BY indexname",
                (list(VECTOR_INDEXES),),
            )
            rows = await cur.fetchall()
            if not conn.autocommit:
                await conn.commit()
        return [r[0] for r in rows]

    async def begin_backfill(self) -> bool:
        """Enter backfill mode; True when the store is in it now (it was empty, or an
        interrupted backfill resumes), False when it holds items and stays online."""
        async with self._conn() as conn:
            try:
                async with conn.transaction():
                    cur = await conn.execute("SELECT items_begin_backfill()")
                    row = await cur.fetchone()
            except psycopg.Error as exc:
                raise db.db_error(exc, "item store mode") from exc
        return bool(row and row[0])

    async def finish_backfill(self) -> bool:
        """Build the missing vector indexes and record online mode, in one transaction;
        True when a backfill was finished now (False: the store was online already, and
        this only made sure its indexes exist)."""
        async with self._conn() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        sql.SQL("SET LOCAL statement_timeout = {}").format(
                            sql.Literal(int(self.build_timeout_s * 1000))
                        )
                    )
                    await conn.execute(
                        sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                            sql.Literal(f"{int(self.build_memory_mb)}MB")
                        )
                    )
                    cur = await conn.execute("SELECT items_finish_backfill()")
                    row = await cur.fetchone()
            except psycopg.Error as exc:
                raise db.db_error(exc, "item store mode") from exc
        return bool(row and row[0])
